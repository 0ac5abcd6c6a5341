/* msgs.h: building messages from JSON text for the unit tests. */
#ifndef DLQFS_TEST_MSGS_H
#define DLQFS_TEST_MSGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

static inline struct message *msg_json(const char *json)
{
	struct message *m = NULL;

	if (message_parse(json, strlen(json), &m) < 0) {
		printf("Bail out! cannot parse test message %s\n", json);
		exit(1);
	}
	return m;
}

/* A message with id, createdAt, state and a labels array text. */
static inline struct message *msg_make(const char *id, long long created,
				       const char *state, const char *labels)
{
	char buf[2048];

	snprintf(buf, sizeof(buf),
		 "{\"dlqId\": \"%s\", \"createdAt\": %lld, "
		 "\"workflowUrl\": \"https://a.example/wf\", "
		 "\"workflowRunId\": \"wfr_%s\", \"responseStatus\": 500, "
		 "\"responseBody\": \"boom %s\"%s%s%s%s%s}",
		 id, created, id, id,
		 state ? ", \"failureFunctionState\": \"" : "",
		 state ? state : "", state ? "\"" : "",
		 labels ? ", \"labels\": " : "", labels ? labels : "");
	return msg_json(buf);
}

#endif
