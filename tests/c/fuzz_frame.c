#include "gilfree.h"
int main(void) { return 0; }
