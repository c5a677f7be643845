#include "gilfree.h"
#include "test.h"
TEST_MAIN()
