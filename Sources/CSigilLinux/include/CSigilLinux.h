#ifndef SIGIL_CSIGILLINUX_H
#define SIGIL_CSIGILLINUX_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Linux-only calls that Swift's Glibc module cannot reach: `struct ucred`, SO_PEERCRED,
 * accept4 and pthread_setname_np need _GNU_SOURCE, and prctl's variadic signature does not
 * import. Each wrapper returns 0 (or a descriptor) on success, -1 with errno set on failure.
 */

/* Peer credentials of a connected AF_UNIX socket. */
int CSigilLinux_peercred(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/* Supplementary groups of the peer of a connected AF_UNIX socket (SO_PEERGROUPS, Linux 4.13+).
 * Returns the number of groups (which may exceed `max`: call again with a larger buffer), or -1. */
int CSigilLinux_peergroups(int fd, gid_t *groups, int max);

/* prctl(PR_SET_DUMPABLE, 0): no core dumps, no ptrace by same-uid processes. */
int CSigilLinux_set_nondumpable(void);

/* prctl(PR_GET_DUMPABLE). Returns the flag, or -1. */
int CSigilLinux_get_dumpable(void);

/* setrlimit(RLIMIT_CORE, {0, 0}). */
int CSigilLinux_disable_core_dumps(void);

/* getrlimit(RLIMIT_MEMLOCK) soft limit in bytes (UINT64_MAX for unlimited), or -1 on error. */
int CSigilLinux_memlock_limit(uint64_t *soft);

/* Fills a sockaddr_un for `path` (len bytes, abstract namespace when path[0] == '@').
 * Returns the socklen to pass to bind/connect/sendto, or -1 if the path does not fit. */
int CSigilLinux_sockaddr_un(void *storage, size_t storage_len, const char *path, size_t len);

/* sizeof(struct sockaddr_un). */
size_t CSigilLinux_sockaddr_un_size(void);

/* accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK). */
int CSigilLinux_accept_nonblocking(int fd);

/* pthread_setname_np: names show in top -H and gdb. Best effort. */
void CSigilLinux_set_thread_name(pthread_t thread, const char *name);

/* sched_setaffinity(tid, {cpus}): tid 0 is the calling thread. */
int CSigilLinux_set_affinity(pid_t tid, const int *cpus, int count);

/* The CPUs thread `tid` (0: the calling one) may run on, ascending. Returns how many (at most
 * `max`), or -1. */
int CSigilLinux_allowed_cpus(pid_t tid, int *cpus, int max);

/* Sets the owner and group of the socket node at `path` without following a symlink there:
 * opens the node with O_PATH | O_NOFOLLOW, checks it is a socket owned by the calling process's
 * effective uid (so it is the one we just bound, not something swapped in), and changes that
 * inode through the descriptor (fchownat AT_EMPTY_PATH). uid or gid (uid_t)-1 leaves it as it is.
 * Writes the node's mode to *mode. Returns 0, or -1 with errno (ELOOP: a symlink; EPERM: not
 * ours; ENOTSOCK: not a socket). */
int CSigilLinux_chown_socket_node(const char *path, uid_t uid, gid_t gid, unsigned int *mode);

/* pipe2(fds, O_CLOEXEC). */
int CSigilLinux_pipe_cloexec(int fds[2]);

/* posix_spawn_file_actions_addchdir_np (glibc 2.29+): the child changes directory first.
 * `actions` is a posix_spawn_file_actions_t *. */
int CSigilLinux_spawn_add_chdir(void *actions, const char *path);

/* posix_spawn_file_actions_addclosefrom_np(actions, from) (glibc 2.34+): the child inherits no
 * descriptor from `from` up, whatever the parent has open without close-on-exec. */
int CSigilLinux_spawn_add_closefrom(void *actions, int from);

#endif
