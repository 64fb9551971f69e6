/* apo — Automatic Prompt Optimisation (issue 7). Placeholder entry point until it lands. */
#include "../trainerd.h"

#include <stdio.h>

int trainerd_apo_main(int argc, char **argv)
{
    fprintf(stderr, "trainerd apo: not available in this build yet (issue 7)\n");
    return 1;
}
