/* sync.c -- under construction (see DESIGN.md). */
