/* help: the text of dlqfs --help. */
#ifndef DLQFS_HELP_H
#define DLQFS_HELP_H

/* Prints the usage, every option with its default (@refresh_default:
 * -o refresh's, in seconds), libfuse's own options and the environment
 * on stdout; @prog is argv[0]. */
void help_print(const char *prog, double refresh_default);

#endif
