/* proc.c -- under construction (see DESIGN.md). */
