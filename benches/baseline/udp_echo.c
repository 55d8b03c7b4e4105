// The physical limit on this machine: a UDP request/response pair over
// loopback with recvmmsg/sendmmsg batches, no protocol work at all.
//
//   server: udp_echo server PORT
//   client: udp_echo client PORT SECONDS [INFLIGHT]
//   SIP answerer: udp_echo sip PORT
//
// The client keeps INFLIGHT (default 256) small datagrams outstanding,
// counts answered pairs for SECONDS and prints "pairs_per_sec N". Both
// sides stop by themselves (the server after 10 s without traffic).
//
// `sip` is the floor under the load generator's own traffic (`tether bench
// register`: REGISTERs from many 127/8 sources and ports): unconnected, it
// answers each request with its own header lines under "SIP/2.0 200 OK",
// which is all the generator checks, and nothing else. It stops after 10 s
// without traffic, or on SIGTERM.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define SIZE 512

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s server PORT | client PORT SECONDS [INFLIGHT]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[2]);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in srv = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &srv.sin_addr);
    static char data[BATCH][SIZE];
    struct iovec iov[BATCH];
    struct sockaddr_in addr[BATCH];
    struct mmsghdr msg[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = data[i];
        iov[i].iov_len = SIZE;
        memset(&msg[i], 0, sizeof msg[i]);
        msg[i].msg_hdr.msg_iov = &iov[i];
        msg[i].msg_hdr.msg_iovlen = 1;
        msg[i].msg_hdr.msg_name = &addr[i];
        msg[i].msg_hdr.msg_namelen = sizeof addr[i];
    }
    if (strcmp(argv[1], "sip") == 0) {
        if (bind(fd, (struct sockaddr *)&srv, sizeof srv) != 0) { perror("bind"); return 1; }
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        static char out[BATCH][SIZE * 3];
        struct iovec oiov[BATCH];
        struct mmsghdr omsg[BATCH];
        static const char status[] = "SIP/2.0 200 OK";
        for (;;) {
            for (int i = 0; i < BATCH; i++) {
                iov[i].iov_len = SIZE * 2;
                iov[i].iov_base = out[i] + SIZE;  // room before it for the status line
                msg[i].msg_hdr.msg_namelen = sizeof addr[i];
            }
            int n = recvmmsg(fd, msg, BATCH, MSG_WAITFORONE, NULL);
            if (n <= 0) return 0;
            int m = 0;
            for (int i = 0; i < n; i++) {
                char *req = out[i] + SIZE;
                int len = (int)msg[i].msg_len;
                char *eol = memmem(req, len, "\r\n", 2);
                if (eol == NULL) continue;
                // The status line replaces the request line, in place.
                char *start = eol - (sizeof status - 1);
                memcpy(start, status, sizeof status - 1);
                oiov[m].iov_base = start;
                oiov[m].iov_len = (size_t)(req + len - start);
                memset(&omsg[m], 0, sizeof omsg[m]);
                omsg[m].msg_hdr.msg_iov = &oiov[m];
                omsg[m].msg_hdr.msg_iovlen = 1;
                omsg[m].msg_hdr.msg_name = &addr[i];
                omsg[m].msg_hdr.msg_namelen = msg[i].msg_hdr.msg_namelen;
                m++;
            }
            if (m > 0) sendmmsg(fd, omsg, m, 0);
        }
    }
    if (strcmp(argv[1], "server") == 0) {
        if (bind(fd, (struct sockaddr *)&srv, sizeof srv) != 0) { perror("bind"); return 1; }
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        for (;;) {
            for (int i = 0; i < BATCH; i++) {
                iov[i].iov_len = SIZE;
                msg[i].msg_hdr.msg_namelen = sizeof addr[i];
            }
            int n = recvmmsg(fd, msg, BATCH, MSG_WAITFORONE, NULL);
            if (n <= 0) return 0;  // idle for 10 s: done
            for (int i = 0; i < n; i++) iov[i].iov_len = msg[i].msg_len;
            sendmmsg(fd, msg, n, 0);
        }
    }
    double secs = atof(argv[3]);
    int inflight = argc > 4 ? atoi(argv[4]) : 256;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    connect(fd, (struct sockaddr *)&srv, sizeof srv);
    for (int i = 0; i < BATCH; i++) {
        msg[i].msg_hdr.msg_name = NULL;
        msg[i].msg_hdr.msg_namelen = 0;
        iov[i].iov_len = 300;  // about an OPTIONS keepalive
    }
    for (int sent = 0; sent < inflight; sent += BATCH) sendmmsg(fd, msg, BATCH, 0);
    long pairs = 0;
    double start = now();
    while (now() - start < secs) {
        for (int i = 0; i < BATCH; i++) iov[i].iov_len = SIZE;
        int n = recvmmsg(fd, msg, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) {  // something was lost: top the window up again
            for (int i = 0; i < BATCH; i++) iov[i].iov_len = 300;
            sendmmsg(fd, msg, BATCH, 0);
            continue;
        }
        pairs += n;
        for (int i = 0; i < n; i++) iov[i].iov_len = 300;
        sendmmsg(fd, msg, n, 0);
    }
    printf("pairs_per_sec %.0f\n", pairs / (now() - start));
    return 0;
}
