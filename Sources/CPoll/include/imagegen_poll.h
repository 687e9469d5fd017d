#ifndef IMAGEGEN_POLL_H
#define IMAGEGEN_POLL_H

#include <poll.h>
#include <stdint.h>

/// Waits like poll(2) for at most `timeout_ns` nanoseconds (negative: without a limit), with
/// nanosecond precision where the system has ppoll(2). Returns poll's result; an interrupted
/// wait returns 0 (nothing ready).
int ig_poll(struct pollfd *fds, unsigned int count, int64_t timeout_ns);

/// Creates a wake-up descriptor: an eventfd where there is one (`fds[0] == fds[1]`), else a pipe
/// (`fds[0]` to poll, `fds[1]` to signal). Both ends are non-blocking and close on exec.
/// Returns 0, or -1 with errno set.
int ig_wakeup_create(int fds[2]);

/// Makes the wake-up descriptor readable (`fd`: the signaling end).
void ig_wakeup_signal(int fd);

/// Reads a wake-up descriptor empty again (`fd`: the polled end).
void ig_wakeup_drain(int fd);

/// Sets O_NONBLOCK on a descriptor. Returns 0, or -1 with errno set.
int ig_set_nonblocking(int fd);

#endif
