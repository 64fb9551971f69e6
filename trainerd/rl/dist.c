/* dist — MPI collectives or single-rank no-ops (see dist.h). Every MPI call is checked. */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef AGL_WITH_MPI
#include <mpi.h>

#define MPI_CHECK(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS) {                                                                  \
            fprintf(stderr, "trainerd: MPI error %d at %s:%d\n", rc_, __FILE__, __LINE__);         \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

static int g_rank, g_world = 1, g_init;

void rl_dist_init(int *argc, char ***argv)
{
    int done = 0;
    MPI_CHECK(MPI_Initialized(&done));
    if (!done) {
        MPI_CHECK(MPI_Init(argc, argv));
        g_init = 1;
    }
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_world));
}

void rl_dist_finalize(void)
{
    if (g_init) MPI_Finalize();
    g_init = 0;
}

int rl_dist_rank(void)
{
    return g_rank;
}

int rl_dist_world(void)
{
    return g_world;
}

void rl_dist_sum_f(float *x, size_t n)
{
    if (g_world > 1)
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
}

void rl_dist_sum_d(double *x, size_t n)
{
    if (g_world > 1)
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}
#else
void rl_dist_init(int *argc, char ***argv) {}
void rl_dist_finalize(void) {}
int rl_dist_rank(void)
{
    return 0;
}
int rl_dist_world(void)
{
    return 1;
}
void rl_dist_sum_f(float *x, size_t n) {}
void rl_dist_sum_d(double *x, size_t n) {}
#endif
