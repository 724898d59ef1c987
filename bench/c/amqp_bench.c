/* The benchmark's C limit: librabbitmq (Debian's librabbitmq-dev) with publisher confirms
 * streamed in a window of 1000, prefetch 1000 and acks in batches of 100, as issue 4 measured.
 *   amqp_bench publish URL QUEUE COUNT SIZE [RATE]   (RATE msgs/s, 0 = as fast as possible)
 *   amqp_bench consume URL QUEUE COUNT               (prints "ready", then one JSON line of results)
 * Built by the bench: cc -O2 -o amqp_bench amqp_bench.c -lrabbitmq
 */
#define PROGRAM "amqp_bench"
#include "amqp_common.h"
#include <string.h>

#define WINDOW 1000
#define PREFETCH 1000
#define ACK_EVERY 100

/* Read one frame (waiting up to timeout, NULL = forever); count confirms. Returns 0 on timeout. */
static int read_confirms(amqp_connection_state_t conn, struct timeval *timeout, unsigned long *confirmed) {
  amqp_frame_t frame;
  int status = amqp_simple_wait_frame_noblock(conn, &frame, timeout);
  if (status == AMQP_STATUS_TIMEOUT) return 0;
  if (status != AMQP_STATUS_OK) die("connection lost");
  if (frame.frame_type != AMQP_FRAME_METHOD) return 1; /* a returned message's header/body */
  if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
    amqp_basic_ack_t *ack = frame.payload.method.decoded;
    if (ack->multiple) *confirmed = ack->delivery_tag;
    else if (ack->delivery_tag > *confirmed) *confirmed = ack->delivery_tag;
  } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
    die("nacked");
  }
  return 1;
}

static void publish(char *url, const char *queue, unsigned long count, size_t size, double rate) {
  amqp_connection_state_t conn = open_channel(url, queue);
  amqp_confirm_select(conn, 1);
  check_rpc(amqp_get_rpc_reply(conn), "confirm.select failed");
  char *body = calloc(size < 8 ? 8 : size, 1);
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.delivery_mode = 2;
  unsigned long published = 0, confirmed = 0;
  struct timeval zero = {0, 0};
  double start = now();
  for (unsigned long i = 0; i < count; i++) {
    if (rate > 0) { /* sleep until this message is due; confirms wait in the socket meanwhile */
      double wait = start + i / rate - now();
      if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
    while (published - confirmed >= WINDOW) read_confirms(conn, NULL, &confirmed);
    double sent_at = now();
    memcpy(body, &sent_at, sizeof sent_at);
    amqp_bytes_t bytes = {size, body};
    if (amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue), 1, 0, &props, bytes) != 0)
      die("publish failed");
    published++;
    while (read_confirms(conn, &zero, &confirmed)) {
    }
  }
  while (confirmed < published) read_confirms(conn, NULL, &confirmed);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  free(body);
}

static void consume(char *url, const char *queue, unsigned long count) {
  amqp_connection_state_t conn = open_channel(url, queue);
  amqp_basic_qos(conn, 1, 0, PREFETCH, 0);
  check_rpc(amqp_get_rpc_reply(conn), "basic.qos failed");
  amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  check_rpc(amqp_get_rpc_reply(conn), "basic.consume failed");
  printf("ready\n");
  fflush(stdout);
  double *latencies = malloc(count * sizeof(double));
  double first = 0, last = 0;
  unsigned long received = 0, unacked = 0;
  while (received < count) {
    amqp_envelope_t envelope;
    amqp_maybe_release_buffers(conn);
    check_rpc(amqp_consume_message(conn, &envelope, NULL, 0), "consume failed");
    double t = now(), sent_at = 0;
    if (envelope.message.body.len >= sizeof sent_at) memcpy(&sent_at, envelope.message.body.bytes, sizeof sent_at);
    if (!first) first = t;
    last = t;
    latencies[received++] = (t - sent_at) * 1000;
    if (++unacked >= ACK_EVERY || received == count) {
      amqp_basic_ack(conn, 1, envelope.delivery_tag, 1);
      unacked = 0;
    }
    amqp_destroy_envelope(&envelope);
  }
  printf("{\"count\": %lu, \"first_recv\": %.6f, \"last_recv\": %.6f, \"latencies_ms\": [", count, first, last);
  for (unsigned long i = 0; i < count; i++) printf(i ? ",%.3f" : "%.3f", latencies[i]);
  printf("]}\n");
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  free(latencies);
}

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "publish") == 0 && argc >= 6) {
    publish(argv[2], argv[3], strtoul(argv[4], NULL, 10), strtoul(argv[5], NULL, 10),
            argc > 6 ? atof(argv[6]) : 0);
  } else if (argc >= 5 && strcmp(argv[1], "consume") == 0) {
    consume(argv[2], argv[3], strtoul(argv[4], NULL, 10));
  } else {
    fprintf(stderr, "usage: amqp_bench publish URL QUEUE COUNT SIZE [RATE] | consume URL QUEUE COUNT\n");
    return 2;
  }
  return 0;
}
