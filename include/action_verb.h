/* action_verb: the four things a user can ask of the DLQ, by name.
 *
 * The names are the control files of .dlqfs/ (tree) and the "verb" of
 * actions.log lines (action_log); what each verb does is the action
 * module's. Kept apart so that the tree can name its files without
 * linking the module that talks to the API.
 */
#ifndef DLQFS_ACTION_VERB_H
#define DLQFS_ACTION_VERB_H

enum action_verb {
	ACTION_DELETE,
	ACTION_RESUME,
	ACTION_RESTART,
	ACTION_CALLBACK,
	ACTION_NVERBS
};

/* "delete", "resume", "restart", "callback": the control file names and
 * the "verb" of log lines. */
extern const char *const action_verb_names[ACTION_NVERBS];

/* Sets @ret_verb from a control file name. Returns 0, or -EINVAL. */
int action_verb_parse(const char *name, enum action_verb *ret_verb);

#endif
