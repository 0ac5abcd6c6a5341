/* action_verb: the verbs' names.
 *
 * Owns: the names of the four verbs and reading one back. Leaves to
 * others: what a verb does (action), where the files are (tree).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "action_verb.h"

const char *const action_verb_names[ACTION_NVERBS] = {
	[ACTION_DELETE] = "delete",
	[ACTION_RESUME] = "resume",
	[ACTION_RESTART] = "restart",
	[ACTION_CALLBACK] = "callback",
};

int action_verb_parse(const char *name, enum action_verb *ret_verb)
{
	for (int v = 0; v < ACTION_NVERBS; v++) {
		if (name && strcmp(name, action_verb_names[v]) == 0) {
			*ret_verb = (enum action_verb)v;
			return 0;
		}
	}
	return -EINVAL;
}
