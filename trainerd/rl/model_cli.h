/* model_cli — `trainerd model info|tokenize|logits|generate`: inspect a real checkpoint (GGUF
 * or HF folder) from the command line; what tests/integration/test_real_model.py drives. */
#ifndef RL_MODEL_CLI_H
#define RL_MODEL_CLI_H

/* argv[0] is "model"; returns the exit status. */
int trainerd_model_main(int argc, char **argv);

#endif
