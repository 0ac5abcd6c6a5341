/* actor: the thread that carries out actions.
 *
 * Owns: a FIFO of submitted actions, one API client used by its thread
 * only, the cancel flag of that client's requests, and the thread.
 * Leaves to others: parsing and running an action and its log lines
 * (action), what a finished action means for the tree and the FUSE reply
 * (the completion callback, in fs).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "actor.h"

struct job {
	struct job *next;
	struct action *act;
	actor_done_fn done;
	void *ctx;
};

struct actor {
	struct api *api;	 /* the thread's only */
	struct action_log *log;	 /* borrowed */
	atomic_int cancel;	 /* its requests give up when set */
	pthread_mutex_t lock;	 /* protects the fields below */
	pthread_cond_t wake;	 /* a job, or stop */
	struct job *head, *tail; /* queued, oldest first */
	bool stop;
	bool running; /* the thread was started and not joined */
	pthread_t thread;
};

struct actor *actor_new(const struct api_config *cfg, struct action_log *log)
{
	struct actor *a = calloc(1, sizeof(*a));
	struct api_config c = *cfg;

	if (!a)
		return NULL;
	atomic_init(&a->cancel, 0);
	c.http.cancel = &a->cancel;
	a->api = api_new(&c);
	if (!a->api) {
		free(a);
		return NULL;
	}
	a->log = log;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	return a;
}

static void *actor_main(void *arg)
{
	struct actor *a = arg;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		struct job *j;
		int r;

		while (!a->stop && !a->head)
			pthread_cond_wait(&a->wake, &a->lock);
		if (a->stop)
			break;
		j = a->head;
		a->head = j->next;
		if (!a->head)
			a->tail = NULL;
		pthread_mutex_unlock(&a->lock);

		r = action_run(j->act, a->api, a->log);
		j->done(j->ctx, j->act, r);
		free(j);

		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int actor_start(struct actor *a)
{
	int r = pthread_create(&a->thread, NULL, actor_main, a);

	if (r)
		return -r;
	a->running = true;
	return 0;
}

int actor_submit(struct actor *a, struct action *act, actor_done_fn done,
		 void *ctx)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->act = act;
	j->done = done;
	j->ctx = ctx;
	pthread_mutex_lock(&a->lock);
	if (a->stop || !a->running) {
		pthread_mutex_unlock(&a->lock);
		free(j);
		return -ESHUTDOWN;
	}
	if (a->tail)
		a->tail->next = j;
	else
		a->head = j;
	a->tail = j;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void actor_stop(struct actor *a)
{
	struct job *j;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	j = a->head;
	a->head = a->tail = NULL;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	atomic_store(&a->cancel, 1);
	if (a->running) {
		pthread_join(a->thread, NULL);
		a->running = false;
	}
	while (j) {
		struct job *next = j->next;

		j->done(j->ctx, j->act, -ECANCELED);
		free(j);
		j = next;
	}
}

void actor_free(struct actor *a)
{
	if (!a)
		return;
	actor_stop(a);
	api_free(a->api);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->wake);
	free(a);
}
