/* actor: carries out actions one at a time, on a thread of its own.
 *
 * Acting on the DLQ takes HTTP round trips (a bulk resume of 1,000 ids is
 * 20 requests), so the FUSE layer hands each parsed action to the actor
 * and answers the request from the actor's completion callback: no FUSE
 * thread waits on the network. One action at a time, in order: two writes
 * never race each other at the API, and the rate stays that of one client.
 */
#ifndef DLQFS_ACTOR_H
#define DLQFS_ACTOR_H

#include "action.h"
#include "api.h"

struct actor;

/* Called once per submitted action, from the actor thread, or from
 * actor_stop() with -ECANCELED for an action that never ran. @result is
 * action_run()'s. The callback owns @act (action_free()). */
typedef void (*actor_done_fn)(void *ctx, struct action *act, int result);

/* A new actor with its own API client for @cfg (copied; its http.cancel
 * is replaced by the actor's own), appending to @log (borrowed, may be
 * NULL). NULL when out of memory. */
struct actor *actor_new(const struct api_config *cfg, struct action_log *log);

/* Starts the thread. Returns 0 or a negative errno. */
int actor_start(struct actor *a);

/* Queues @act (stolen) for @done(@ctx). Returns 0; -ESHUTDOWN once
 * stopping (then @act is not taken and @done is not called). */
int actor_submit(struct actor *a, struct action *act, actor_done_fn done,
		 void *ctx);

/* Cancels the action being carried out (its requests end as -ECANCELED),
 * completes every queued one with -ECANCELED, and joins the thread. */
void actor_stop(struct actor *a);

/* Stops it first if needed. x_free(NULL) is a no-op. */
void actor_free(struct actor *a);

#endif
