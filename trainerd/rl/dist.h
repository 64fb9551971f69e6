/* dist — data-parallel collectives for the trainer. With `make MPI=1` these are MPI calls on
 * MPI_COMM_WORLD; otherwise one rank and no-ops, so the same trainer code runs either way. */
#ifndef RL_DIST_H
#define RL_DIST_H

#include <stddef.h>

void rl_dist_init(int *argc, char ***argv);
void rl_dist_finalize(void);
int rl_dist_rank(void);
int rl_dist_world(void);
/* In-place sums over all ranks. */
void rl_dist_sum_f(float *x, size_t n);
void rl_dist_sum_d(double *x, size_t n);

#endif
