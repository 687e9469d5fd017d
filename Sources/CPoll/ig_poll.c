#define _GNU_SOURCE
#include "imagegen_poll.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

int ig_poll(struct pollfd *fds, unsigned int count, int64_t timeout_ns) {
    int result;
#ifdef __linux__
    struct timespec timeout;
    if (timeout_ns >= 0) {
        timeout.tv_sec = (time_t)(timeout_ns / 1000000000);
        timeout.tv_nsec = (long)(timeout_ns % 1000000000);
    }
    result = ppoll(fds, (nfds_t)count, timeout_ns >= 0 ? &timeout : NULL, NULL);
#else
    int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
    result = poll(fds, (nfds_t)count, ms);
#endif
    if (result < 0 && errno == EINTR) return 0;
    return result;
}

int ig_wakeup_create(int fds[2]) {
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -1;
    fds[0] = fd;
    fds[1] = fd;
    return 0;
#else
    if (pipe(fds) != 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
#endif
}

void ig_wakeup_signal(int fd) {
#ifdef __linux__
    uint64_t one = 1;
    ssize_t written = write(fd, &one, sizeof one);
#else
    char one = 1;
    ssize_t written = write(fd, &one, 1);
#endif
    (void)written; /* full (EAGAIN): it is readable already */
}

void ig_wakeup_drain(int fd) {
    char buffer[64];
    while (read(fd, buffer, sizeof buffer) > 0) {
    }
}

int ig_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}
