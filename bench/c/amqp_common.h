/* What the bench's C programs share: a clock, a one-line exit, and a channel open on a declared durable
 * classic queue. Define PROGRAM (the name errors start with) before including it. */
#ifndef AMQP_COMMON_H
#define AMQP_COMMON_H
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Seconds, wall clock: a body's send time is read by another process. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "%s: %s\n", PROGRAM, what);
  exit(1);
}

static void check_rpc(amqp_rpc_reply_t reply, const char *what) {
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) die(what);
}

/* url is parsed in place: pass a copy where it is needed again. */
static amqp_connection_state_t open_channel(char *url, const char *queue) {
  struct amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(url, &info) != AMQP_STATUS_OK) die("bad URL");
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *socket = amqp_tcp_socket_new(conn);
  if (!socket || amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK) die("cannot connect");
  check_rpc(amqp_login(conn, info.vhost, 0, 131072, 60, AMQP_SASL_METHOD_PLAIN, info.user, info.password),
            "login refused");
  amqp_channel_open(conn, 1);
  check_rpc(amqp_get_rpc_reply(conn), "channel.open failed");
  /* AMQP_BENCH_QUEUE_TYPE=quorum: the queue type rabbitipc's row uses (the broker's default: classic) */
  const char *type = getenv("AMQP_BENCH_QUEUE_TYPE");
  amqp_table_entry_t entry = {amqp_cstring_bytes("x-queue-type"),
                              {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(type ? type : "")}}};
  amqp_table_t arguments = {type ? 1 : 0, &entry};
  amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, arguments);
  check_rpc(amqp_get_rpc_reply(conn), "queue.declare failed");
  return conn;
}

#endif
