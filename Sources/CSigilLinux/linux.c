#include "CSigilLinux.h"

#include <spawn.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

int CSigilLinux_peercred(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return -1;
    }
    if (len != sizeof(cred)) {
        errno = EINVAL;
        return -1;
    }
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int CSigilLinux_peergroups(int fd, gid_t *groups, int max) {
    socklen_t len = (socklen_t)(max * (int)sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
        if (errno == ERANGE) {
            return (int)(len / sizeof(gid_t));
        }
        return -1;
    }
    return (int)(len / sizeof(gid_t));
}

int CSigilLinux_set_nondumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int CSigilLinux_get_dumpable(void) {
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}

int CSigilLinux_disable_core_dumps(void) {
    struct rlimit rl = {0, 0};
    return setrlimit(RLIMIT_CORE, &rl);
}

int CSigilLinux_memlock_limit(uint64_t *soft) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
        return -1;
    }
    *soft = (rl.rlim_cur == RLIM_INFINITY) ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    return 0;
}

int CSigilLinux_sockaddr_un(void *storage, size_t storage_len, const char *path, size_t len) {
    struct sockaddr_un *addr = (struct sockaddr_un *)storage;
    if (storage_len < sizeof(*addr) || len == 0) {
        errno = EINVAL;
        return -1;
    }
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (path[0] == '@') {
        /* Abstract namespace: a leading NUL, no terminator, length counts exactly. */
        if (len > sizeof(addr->sun_path)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        addr->sun_path[0] = '\0';
        memcpy(addr->sun_path + 1, path + 1, len - 1);
        return (int)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    /* Filesystem path: must fit with its terminating NUL, never truncated. */
    if (len >= sizeof(addr->sun_path) || memchr(path, '\0', len) != NULL) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(addr->sun_path, path, len);
    return (int)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

size_t CSigilLinux_sockaddr_un_size(void) {
    return sizeof(struct sockaddr_un);
}

int CSigilLinux_accept_nonblocking(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

void CSigilLinux_set_thread_name(pthread_t thread, const char *name) {
    (void)pthread_setname_np(thread, name);
}

int CSigilLinux_set_affinity(pid_t tid, const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) { errno = EINVAL; return -1; }
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(tid, sizeof set, &set);
}

int CSigilLinux_allowed_cpus(pid_t tid, int *cpus, int max) {
    cpu_set_t set;
    if (sched_getaffinity(tid, sizeof set, &set) != 0) return -1;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    }
    return n;
}

int CSigilLinux_chown_socket_node(const char *path, uid_t uid, gid_t gid, unsigned int *mode) {
    int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (S_ISLNK(st.st_mode)) {
        close(fd);
        errno = ELOOP;
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        close(fd);
        errno = ENOTSOCK;
        return -1;
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchownat(fd, "", uid, gid, AT_EMPTY_PATH) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *mode = (unsigned int)(st.st_mode & 07777);
    close(fd);
    return 0;
}

int CSigilLinux_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int CSigilLinux_spawn_add_chdir(void *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np((posix_spawn_file_actions_t *)actions, path);
}

int CSigilLinux_spawn_add_closefrom(void *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
}
