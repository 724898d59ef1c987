/* The RPC bench's C pair: librabbitmq (Debian's librabbitmq-dev) with the guarantees of rabbitipc's pair:
 * persistent requests confirmed by the broker, direct reply-to; the responder confirms its reply before it
 * acks the request (prefetch 1).
 *   amqp_rpc serve URL QUEUE                         (prints "ready", then answers until killed)
 *   amqp_rpc call URL QUEUE CALLS CONCURRENCY SIZE   (one JSON line: latencies_ms, wall_s)
 * Built by the bench: cc -O2 -o amqp_rpc amqp_rpc.c -lrabbitmq -lpthread
 */
#define PROGRAM "amqp_rpc"
#include "amqp_common.h"
#include <pthread.h>
#include <string.h>

#define REPLY_TO "amq.rabbitmq.reply-to"

static char *url_arg, *queue_arg;
static size_t body_size;
static double *latencies;

static amqp_connection_state_t open_confirm_channel(void) {
  char *url = strdup(url_arg); /* each thread parses its own copy */
  amqp_connection_state_t conn = open_channel(url, queue_arg);
  free(url);
  amqp_confirm_select(conn, 1);
  check_rpc(amqp_get_rpc_reply(conn), "confirm.select failed");
  return conn;
}

/* A frame that is not a delivery: a confirm (1), else the broker refused something. */
static int read_confirm(amqp_connection_state_t conn) {
  amqp_frame_t frame;
  if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) die("connection lost");
  if (frame.frame_type != AMQP_FRAME_METHOD) return 0;
  if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) return 1;
  die("the broker nacked or returned a message");
  return 0;
}

/* Wait for the next delivery, counting the confirms read on the way; 1 when a delivery is in `envelope`. */
static int next_event(amqp_connection_state_t conn, amqp_envelope_t *envelope, int *confirms) {
  amqp_maybe_release_buffers(conn);
  amqp_rpc_reply_t result = amqp_consume_message(conn, envelope, NULL, 0);
  if (result.reply_type == AMQP_RESPONSE_NORMAL) return 1;
  if (result.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && result.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
    *confirms += read_confirm(conn);
    return 0;
  }
  die("consume failed");
  return 0;
}

static void serve(void) {
  amqp_connection_state_t conn = open_confirm_channel();
  amqp_basic_qos(conn, 1, 0, 1, 0);
  check_rpc(amqp_get_rpc_reply(conn), "basic.qos failed");
  amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue_arg), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  check_rpc(amqp_get_rpc_reply(conn), "basic.consume failed");
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    amqp_envelope_t request;
    int confirms = 0;
    if (!next_event(conn, &request, &confirms)) continue;
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = request.message.properties.correlation_id;
    if (amqp_basic_publish(conn, 1, amqp_empty_bytes, request.message.properties.reply_to, 0, 0, &props,
                           request.message.body) != 0)
      die("reply failed");
    while (!read_confirm(conn)) {
    }
    amqp_basic_ack(conn, 1, request.delivery_tag, 0);
    amqp_destroy_envelope(&request);
  }
}

struct share {
  long first, count;
};

static void *caller(void *arg) {
  struct share *share = arg;
  amqp_connection_state_t conn = open_confirm_channel();
  amqp_basic_consume(conn, 1, amqp_cstring_bytes(REPLY_TO), amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
  check_rpc(amqp_get_rpc_reply(conn), "basic.consume of direct reply-to failed");
  char *body = calloc(body_size ? body_size : 1, 1);
  char id[32];
  for (long i = 0; i < share->count; i++) {
    snprintf(id, sizeof id, "%ld", share->first + i);
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
    props.delivery_mode = 2;
    props.reply_to = amqp_cstring_bytes(REPLY_TO);
    props.correlation_id = amqp_cstring_bytes(id);
    double start = now();
    amqp_bytes_t bytes = {body_size, body};
    if (amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue_arg), 0, 0, &props, bytes) != 0)
      die("publish failed");
    int confirms = 0, replied = 0;
    while (!confirms || !replied) {
      amqp_envelope_t reply;
      if (next_event(conn, &reply, &confirms)) {
        amqp_bytes_t got = reply.message.properties.correlation_id;
        replied = got.len == strlen(id) && memcmp(got.bytes, id, got.len) == 0;
        amqp_destroy_envelope(&reply);
      }
    }
    latencies[share->first + i] = (now() - start) * 1000;
  }
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  free(body);
  return NULL;
}

static void call(long calls, long concurrency) {
  latencies = calloc(calls, sizeof(double));
  pthread_t threads[64];
  struct share shares[64];
  if (concurrency < 1 || concurrency > 64) die("concurrency 1 to 64");
  double start = now();
  for (long n = 0, first = 0; n < concurrency; n++) {
    shares[n].first = first;
    shares[n].count = calls / concurrency + (n < calls % concurrency);
    first += shares[n].count;
    pthread_create(&threads[n], NULL, caller, &shares[n]);
  }
  for (long n = 0; n < concurrency; n++) pthread_join(threads[n], NULL);
  double wall = now() - start;
  printf("{\"wall_s\": %.6f, \"latencies_ms\": [", wall);
  for (long i = 0; i < calls; i++) printf(i ? ",%.3f" : "%.3f", latencies[i]);
  printf("]}\n");
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "serve") == 0) {
    url_arg = argv[2], queue_arg = argv[3];
    serve();
  } else if (argc == 7 && strcmp(argv[1], "call") == 0) {
    url_arg = argv[2], queue_arg = argv[3], body_size = strtoul(argv[6], NULL, 10);
    call(strtol(argv[4], NULL, 10), strtol(argv[5], NULL, 10));
  } else {
    fprintf(stderr, "usage: amqp_rpc serve URL QUEUE | call URL QUEUE CALLS CONCURRENCY SIZE\n");
    return 2;
  }
  return 0;
}
