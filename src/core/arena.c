/* arena.c -- under construction (see DESIGN.md). */
