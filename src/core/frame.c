/* frame.c -- under construction (see DESIGN.md). */
