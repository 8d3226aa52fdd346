#include "asymml/asymml.h"
int main(void) { return 0; }
