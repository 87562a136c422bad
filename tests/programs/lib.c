/* A shared library to dlopen. */
int custos_test_answer(void) { return 42; }
