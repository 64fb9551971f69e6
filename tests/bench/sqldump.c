/* sqldump — prints the statements of stored/db_sql.c that the store benchmark replays with
 * pgbench, one "NAME<TAB>SQL" line each, so the pgbench scripts always run stored's own SQL text
 * (a renamed statement breaks this build instead of silently benchmarking stale SQL). */
#include "db.h"

#include <stdio.h>

#define DUMP(id) printf("%s\t%s\n", #id, db_sql[id])

int main(void)
{
    DUMP(SQL_ROLLOUT_INSERT);
    DUMP(SQL_ROLLOUT_GET);
    DUMP(SQL_ROLLOUT_GET_FOR_UPDATE);
    DUMP(SQL_ROLLOUT_UPDATE);
    DUMP(SQL_ROLLOUT_ADD_ATTEMPT);
    DUMP(SQL_ROLLOUT_SET_RUNNING_IF_LATEST);
    DUMP(SQL_ROLLOUT_LOCK);
    DUMP(SQL_QUEUE_PICK);
    DUMP(SQL_ATTEMPT_INSERT);
    DUMP(SQL_ATTEMPT_GET);
    DUMP(SQL_ATTEMPT_UPDATE);
    DUMP(SQL_ATTEMPT_HEARTBEAT);
    DUMP(SQL_WORKER_HEARTBEAT);
    DUMP(SQL_WORKER_SYNC);
    DUMP(SQL_WORKER_DEQUEUE_IDLE);
    DUMP(SQL_RESOURCES_LATEST);
    DUMP(SQL_SPAN_COUNTER_RAISE);
    DUMP(SQL_SPAN_COUNTER_NEXT);
    DUMP(SQL_SPAN_INSERT);
    DUMP(SQL_NOTIFY_DONE);
    return 0;
}
