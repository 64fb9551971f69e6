/* rl — GRPO and SFT (issue 8). Placeholder entry points until they land. */
#include "../trainerd.h"

#include <stdio.h>

int trainerd_rl_main(int argc, char **argv)
{
    fprintf(stderr, "trainerd rl: not available in this build yet (issue 8)\n");
    return 1;
}

int trainerd_sft_main(int argc, char **argv)
{
    fprintf(stderr, "trainerd sft: not available in this build yet (issue 8)\n");
    return 1;
}
