/* ring.c -- under construction (see DESIGN.md). */
