/*
 * server — wires everything: opens the store and the upload lock (lock/local.h), binds
 * the listening sockets (one SO_REUSEPORT socket per worker, IPv4+IPv6 or a unix
 * socket), starts the worker threads (one uv_loop_t + http server + tus worker each),
 * and handles signals on the main thread: SIGTERM/SIGINT stop accepting, interrupt
 * in-flight uploads so they save their offset, and exit within -shutdown-timeout.
 *
 * Threads: call from the main thread only.
 */
#ifndef TUSC_SERVER_H
#define TUSC_SERVER_H

#include "config/config.h"

/* Runs until a stop signal. Returns the process exit code (0 on a clean stop). */
int tusc_server_run(const tusc_config_t *cfg);

#endif
