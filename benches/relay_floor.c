// The floor under an RTP relay: UDP forwarding with the same shape as one
// and no protocol work at all. It binds PAIRS port pairs on 127.0.0.1
// (pair i: side A on BASE+2i, side B on BASE+2i+1), waits on all of them
// with one epoll, and on readiness reads a batch (recvmmsg, up to 32) from a
// socket and sends the same buffers (sendmmsg) out of the paired socket to
// that pair's destination on the other side. A destination is latched from
// the first packet seen on the opposite socket (as a relay latches a NATed
// party), or fixed on the command line. Single-threaded: the CPU it spends
// per forwarded packet is what "CPU per packet" of a real relay is divided by.
//
//   relay_floor PAIRS BASE SECONDS [PEER_A_BASE PEER_B_BASE]
//
// PAIRS = 1 is the simplest floor: one pair, every flow through it. With
// PEER_A_BASE and PEER_B_BASE, pair i sends side A's traffic to
// 127.0.0.1:PEER_B_BASE+i and side B's to 127.0.0.1:PEER_A_BASE+i from the
// start instead of latching. It stops after SECONDS (or on SIGTERM/SIGINT)
// and prints one line: "forwarded N dropped_unlatched M send_errors E
// seconds S".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define SIZE 2048

// One side of a pair: its socket and the peer its traffic goes back to
// (latched from the first packet received on it, or fixed).
struct side {
    int fd;
    int latched;
    struct sockaddr_in peer;
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int bind_port(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { perror("socket"); exit(1); }
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "bind 127.0.0.1:%d: %s\n", port, strerror(errno));
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: %s PAIRS BASE SECONDS [PEER_A_BASE PEER_B_BASE]\n", argv[0]);
        return 2;
    }
    int pairs = atoi(argv[1]), base = atoi(argv[2]);
    double secs = atof(argv[3]);
    if (pairs < 1 || base < 1 || base + 2 * pairs > 65536 || secs <= 0) {
        fprintf(stderr, "bad PAIRS, BASE or SECONDS\n");
        return 2;
    }
    // sides[2i] is pair i's side A, sides[2i+1] its side B: the partner of
    // side k is k ^ 1.
    struct side *sides = calloc(2 * (size_t)pairs, sizeof *sides);
    if (!sides) { perror("calloc"); return 1; }
    int ep = epoll_create1(0);
    for (int k = 0; k < 2 * pairs; k++) {
        sides[k].fd = bind_port(base + k);
        if (argc == 6) {
            int peer_base = atoi(argv[4 + (k & 1)]);
            sides[k].latched = 1;
            sides[k].peer.sin_family = AF_INET;
            sides[k].peer.sin_port = htons(peer_base + k / 2);
            sides[k].peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = k};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, sides[k].fd, &ev) < 0) { perror("epoll_ctl"); return 1; }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    static char bufs[BATCH][SIZE];
    static struct iovec iovs[BATCH];
    static struct sockaddr_in from[BATCH];
    static struct mmsghdr in[BATCH], out[BATCH];
    struct epoll_event evs[256];
    unsigned long long forwarded = 0, unlatched = 0, send_errors = 0;
    double start = now(), end = start + secs;
    while (!stop) {
        double t = now();
        if (t >= end) break;
        int ms = (int)((end - t) * 1000) + 1;
        int n = epoll_wait(ep, evs, 256, ms > 100 ? 100 : ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int e = 0; e < n; e++) {
            int k = evs[e].data.u32;
            struct side *src = &sides[k], *dst = &sides[k ^ 1];
            // Level-triggered: read one batch per readiness, so one busy
            // socket cannot starve the others; the next epoll_wait comes
            // back to it.
            for (int i = 0; i < BATCH; i++) {
                iovs[i].iov_base = bufs[i];
                iovs[i].iov_len = SIZE;
                memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
                in[i].msg_hdr.msg_iov = &iovs[i];
                in[i].msg_hdr.msg_iovlen = 1;
                in[i].msg_hdr.msg_name = &from[i];
                in[i].msg_hdr.msg_namelen = sizeof from[i];
            }
            int got = recvmmsg(src->fd, in, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0) continue;
            // The source of this side's traffic is where the other side's
            // traffic goes (latching on the first packet).
            if (!src->latched) {
                src->peer = from[0];
                src->latched = 1;
            }
            if (!dst->latched) {
                unlatched += got;
                continue;
            }
            for (int i = 0; i < got; i++) {
                iovs[i].iov_len = in[i].msg_len;
                memset(&out[i].msg_hdr, 0, sizeof out[i].msg_hdr);
                out[i].msg_hdr.msg_iov = &iovs[i];
                out[i].msg_hdr.msg_iovlen = 1;
                out[i].msg_hdr.msg_name = &dst->peer;
                out[i].msg_hdr.msg_namelen = sizeof dst->peer;
            }
            int sent = 0;
            while (sent < got) {
                int r = sendmmsg(dst->fd, out + sent, got - sent, MSG_DONTWAIT);
                if (r <= 0) {
                    if (r < 0 && errno == EINTR) continue;
                    // A full buffer or an unreachable peer: drop the head, go on.
                    send_errors++;
                    sent++;
                    continue;
                }
                sent += r;
                forwarded += r;
            }
        }
    }
    printf("forwarded %llu dropped_unlatched %llu send_errors %llu seconds %.3f\n", forwarded,
           unlatched, send_errors, now() - start);
    return 0;
}
