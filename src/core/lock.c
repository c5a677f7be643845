/* lock.c -- under construction (see DESIGN.md). */
