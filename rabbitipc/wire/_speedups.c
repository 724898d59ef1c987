/* The compiled AMQP 0-9-1 hot path: the same interface and bytes as rabbitipc/wire/_pure.py.
 *
 * Encoding: PublishTemplate holds the Basic.Publish method frame of one route, encoded once; each
 * encode() writes that frame, the content header (content_type, headers, delivery_mode,
 * message_id, timestamp) and the body frames, split at frame_max, into one buffer sized up front.
 * Decoding: decode() walks a buffer of incoming frames and turns Basic.Deliver/Return (with their
 * header and body frames), Basic.Ack and Basic.Nack into tuples, stopping at the end of the data,
 * at an incomplete frame or message, or at any frame it leaves to pika; a Decoder object does the
 * same for one stream and resumes a message left incomplete where it stopped. Field tables (headers)
 * are rare on this path and go through pika's own encode_table/decode_table.
 *
 * C99 and the CPython C API only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { DELIVER = 1, ACK = 2, NACK = 3, RETURN = 4 };
enum { DONE = 0, PARTIAL = 1, OTHER = 2 };
#define FRAME_MIN_SIZE 4096
#define FRAME_END 0xCE

#define FLAG_CONTENT_TYPE (1u << 15)
#define FLAG_HEADERS (1u << 13)
#define FLAG_DELIVERY_MODE (1u << 12)
#define FLAG_MESSAGE_ID (1u << 7)
#define FLAG_TIMESTAMP (1u << 6)

/* Looked up once at import: pika's BasicProperties class, table codec and short-string error. */
static PyObject *BasicProperties;
static PyObject *encode_table_fn;
static PyObject *decode_table_fn;
static PyObject *ShortStringTooLong;
static PyObject *empty_tuple;
static PyObject *empty_bytes;

/* BasicProperties attribute names, in pika's order, and their property flag bits. */
#define N_PROPS 14
static const char *prop_names[N_PROPS] = {
    "content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
    "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"};
enum { P_SHORT, P_TABLE, P_OCTET, P_U64 };
static const int prop_kinds[N_PROPS] = {P_SHORT, P_SHORT, P_TABLE, P_OCTET, P_OCTET, P_SHORT,
                                        P_SHORT, P_SHORT, P_SHORT, P_U64,   P_SHORT, P_SHORT,
                                        P_SHORT, P_SHORT};
static PyObject *prop_keys[N_PROPS];

static inline void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}
static inline void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}
static inline void put64(unsigned char *p, uint64_t v) {
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}
static inline unsigned get16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t get32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t get64(const unsigned char *p) {
    return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

/* A short string's bytes from str (UTF-8) or bytes; NULL with an exception otherwise. */
static const char *short_bytes(PyObject *value, Py_ssize_t *size, const char *what) {
    const char *raw;
    if (PyUnicode_Check(value)) {
        raw = PyUnicode_AsUTF8AndSize(value, size);
        if (raw == NULL) return NULL;
    } else if (PyBytes_Check(value)) {
        raw = PyBytes_AS_STRING(value);
        *size = PyBytes_GET_SIZE(value);
    } else {
        PyErr_Format(PyExc_TypeError, "%s must be str or bytes, not %.100s", what,
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    if (*size > 255) {
        PyObject *encoded = PyBytes_FromStringAndSize(raw, *size);
        if (encoded != NULL) {
            PyErr_SetObject(ShortStringTooLong, encoded);
            Py_DECREF(encoded);
        }
        return NULL;
    }
    return raw;
}

/* ---------------------------------------------------------------- PublishTemplate */

typedef struct {
    PyObject_HEAD
    PyObject *method_frame; /* bytes: the whole Basic.Publish frame */
    PyObject *content_type; /* bytes (UTF-8) or NULL */
    PyObject *exchange, *routing_key, *content_type_arg;
    int delivery_mode; /* -1: none */
    unsigned channel;
    int mandatory;
    Py_ssize_t frame_max, chunk;
} Template;

static int Template_init(Template *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"channel", "exchange", "routing_key", "mandatory", "frame_max",
                             "content_type", "delivery_mode", NULL};
    long channel;
    PyObject *exchange, *routing_key, *content_type = Py_None, *delivery_mode = Py_None;
    int mandatory = 0;
    Py_ssize_t frame_max = 131072;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "lOO|p$nOO:PublishTemplate", kwlist, &channel,
                                     &exchange, &routing_key, &mandatory, &frame_max,
                                     &content_type, &delivery_mode))
        return -1;
    if (channel < 0 || channel > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "channel %ld is not in 0..65535", channel);
        return -1;
    }
    if (frame_max < FRAME_MIN_SIZE || (unsigned long long)frame_max > 0xFFFFFFFFull) {
        PyErr_Format(PyExc_ValueError, "frame_max %zd is not in %d..4294967295", frame_max,
                     FRAME_MIN_SIZE);
        return -1;
    }
    int mode = -1;
    if (delivery_mode != Py_None) {
        long value = PyLong_AsLong(delivery_mode);
        if (value == -1 && PyErr_Occurred()) return -1;
        if (value < 0 || value > 255) {
            PyErr_Format(PyExc_ValueError, "delivery_mode %ld is not an octet", value);
            return -1;
        }
        mode = (int)value;
    }
    Py_ssize_t exchange_size, key_size, type_size = 0;
    const char *exchange_raw = short_bytes(exchange, &exchange_size, "exchange");
    if (exchange_raw == NULL) return -1;
    const char *key_raw = short_bytes(routing_key, &key_size, "routing_key");
    if (key_raw == NULL) return -1;
    PyObject *type_bytes = NULL;
    if (content_type != Py_None) {
        const char *type_raw = short_bytes(content_type, &type_size, "content_type");
        if (type_raw == NULL) return -1;
        type_bytes = PyBytes_FromStringAndSize(type_raw, type_size);
        if (type_bytes == NULL) return -1;
    }
    /* class, method, ticket, exchange, routing key, bits */
    Py_ssize_t payload = 2 + 2 + 2 + 1 + exchange_size + 1 + key_size + 1;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, 7 + payload + 1);
    if (frame == NULL) {
        Py_XDECREF(type_bytes);
        return -1;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(frame);
    p[0] = 1;
    put16(p + 1, (unsigned)channel);
    put32(p + 3, (uint32_t)payload);
    p += 7;
    put16(p, 60);
    put16(p + 2, 40);
    put16(p + 4, 0);
    p += 6;
    *p++ = (unsigned char)exchange_size;
    memcpy(p, exchange_raw, (size_t)exchange_size);
    p += exchange_size;
    *p++ = (unsigned char)key_size;
    memcpy(p, key_raw, (size_t)key_size);
    p += key_size;
    *p++ = mandatory ? 1 : 0;
    *p = FRAME_END;

    Py_XSETREF(self->method_frame, frame);
    Py_XSETREF(self->content_type, type_bytes);
    Py_INCREF(exchange);
    Py_XSETREF(self->exchange, exchange);
    Py_INCREF(routing_key);
    Py_XSETREF(self->routing_key, routing_key);
    Py_INCREF(content_type);
    Py_XSETREF(self->content_type_arg, content_type);
    self->delivery_mode = mode;
    self->channel = (unsigned)channel;
    self->mandatory = mandatory;
    self->frame_max = frame_max;
    self->chunk = frame_max - 8;
    return 0;
}

static void Template_dealloc(Template *self) {
    Py_XDECREF(self->method_frame);
    Py_XDECREF(self->content_type);
    Py_XDECREF(self->exchange);
    Py_XDECREF(self->routing_key);
    Py_XDECREF(self->content_type_arg);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The per-message arguments of encode/encode_into, after `skip` leading positional ones. */
typedef struct {
    PyObject *body, *message_id, *timestamp, *headers;
} MessageArgs;

static int parse_message_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                              Py_ssize_t skip, MessageArgs *out, const char *fname) {
    static const char *names[4] = {"body", "message_id", "timestamp", "headers"};
    PyObject *slots[4] = {NULL, Py_None, Py_None, Py_None};
    int given[4] = {0, 0, 0, 0};
    Py_ssize_t npos = nargs - skip;
    if (npos < 0 || npos > 4) {
        PyErr_Format(PyExc_TypeError, "%s() takes from %zd to %zd positional arguments", fname,
                     skip + 1, skip + 4);
        return -1;
    }
    for (Py_ssize_t i = 0; i < npos; i++) {
        slots[i] = args[skip + i];
        given[i] = 1;
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
            if (name == NULL) return -1;
            int found = -1;
            for (int j = 0; j < 4; j++)
                if (strcmp(name, names[j]) == 0) found = j;
            if (found < 0) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'",
                             fname, name);
                return -1;
            }
            if (given[found]) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                             name);
                return -1;
            }
            slots[found] = args[nargs + k];
            given[found] = 1;
        }
    }
    if (!given[0]) {
        PyErr_Format(PyExc_TypeError, "%s() missing required argument 'body'", fname);
        return -1;
    }
    out->body = slots[0];
    out->message_id = slots[1];
    out->timestamp = slots[2];
    out->headers = slots[3];
    return 0;
}

/* Everything encode needs to know before writing: sizes, the encoded pieces, and the template's
 * own fields, taken (with references) before any call that can run Python code: encode_table runs
 * user code (a dict subclass's items(), a __del__), which may call __init__ on the template again. */
typedef struct {
    Py_buffer body;
    PyObject *method_frame, *content_type; /* the template's, held */
    int delivery_mode;
    unsigned channel;
    Py_ssize_t chunk;
    const char *message_id;
    Py_ssize_t message_id_size;
    uint64_t timestamp;
    PyObject *table; /* bytes of the encoded headers table, or NULL */
    unsigned flags;
    Py_ssize_t props_size, total;
} Plan;

static void plan_release(Plan *plan) {
    if (plan->body.obj != NULL) PyBuffer_Release(&plan->body);
    Py_CLEAR(plan->table);
    Py_CLEAR(plan->method_frame);
    Py_CLEAR(plan->content_type);
}

static int plan_message(Template *self, MessageArgs *m, Plan *plan) {
    memset(plan, 0, sizeof(*plan));
    if (self->method_frame == NULL) { /* PublishTemplate.__new__ without __init__ */
        PyErr_SetString(PyExc_AttributeError, "PublishTemplate is not initialised (__init__ was not called)");
        return -1;
    }
    plan->method_frame = Py_NewRef(self->method_frame);
    plan->content_type = Py_XNewRef(self->content_type);
    plan->delivery_mode = self->delivery_mode;
    plan->channel = self->channel;
    plan->chunk = self->chunk;
    if (PyObject_GetBuffer(m->body, &plan->body, PyBUF_SIMPLE) < 0) return -1;
    unsigned flags = 0;
    Py_ssize_t props = 0;
    if (plan->content_type != NULL) {
        flags |= FLAG_CONTENT_TYPE;
        props += 1 + PyBytes_GET_SIZE(plan->content_type);
    }
    if (m->headers != Py_None) {
        PyObject *pieces = PyList_New(0);
        if (pieces == NULL) return -1;
        PyObject *res = PyObject_CallFunctionObjArgs(encode_table_fn, pieces, m->headers, NULL);
        if (res == NULL) {
            Py_DECREF(pieces);
            return -1;
        }
        Py_DECREF(res);
        plan->table = PyObject_CallMethod(empty_bytes, "join", "O", pieces);
        Py_DECREF(pieces);
        if (plan->table == NULL) return -1;
        flags |= FLAG_HEADERS;
        props += PyBytes_GET_SIZE(plan->table);
    }
    if (plan->delivery_mode >= 0) {
        flags |= FLAG_DELIVERY_MODE;
        props += 1;
    }
    if (m->message_id != Py_None) {
        plan->message_id = short_bytes(m->message_id, &plan->message_id_size, "message_id");
        if (plan->message_id == NULL) return -1;
        flags |= FLAG_MESSAGE_ID;
        props += 1 + plan->message_id_size;
    }
    if (m->timestamp != Py_None) {
        if (!PyLong_Check(m->timestamp)) {
            PyErr_Format(PyExc_TypeError, "timestamp must be an int, not %.100s",
                         Py_TYPE(m->timestamp)->tp_name);
            return -1;
        }
        unsigned long long ts = PyLong_AsUnsignedLongLong(m->timestamp);
        if (ts == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        plan->timestamp = (uint64_t)ts;
        flags |= FLAG_TIMESTAMP;
        props += 8;
    }
    plan->flags = flags;
    plan->props_size = props;
    Py_ssize_t length = plan->body.len;
    Py_ssize_t frames = length == 0 ? 0 : (length + plan->chunk - 1) / plan->chunk;
    plan->total = PyBytes_GET_SIZE(plan->method_frame) + 7 + 14 + props + 1 + frames * 8 + length;
    return 0;
}

/* The frames of one message into p; with head_only, up to the body's bytes (the body fits one frame). */
static void write_message(Plan *plan, unsigned char *p, int head_only) {
    Py_ssize_t method_size = PyBytes_GET_SIZE(plan->method_frame);
    memcpy(p, PyBytes_AS_STRING(plan->method_frame), (size_t)method_size);
    p += method_size;
    Py_ssize_t length = plan->body.len;
    p[0] = 2;
    put16(p + 1, plan->channel);
    put32(p + 3, (uint32_t)(14 + plan->props_size));
    put16(p + 7, 60);
    put16(p + 9, 0);
    put64(p + 11, (uint64_t)length);
    put16(p + 19, plan->flags);
    p += 21;
    if (plan->content_type != NULL) {
        Py_ssize_t n = PyBytes_GET_SIZE(plan->content_type);
        *p++ = (unsigned char)n;
        memcpy(p, PyBytes_AS_STRING(plan->content_type), (size_t)n);
        p += n;
    }
    if (plan->table != NULL) {
        Py_ssize_t n = PyBytes_GET_SIZE(plan->table);
        memcpy(p, PyBytes_AS_STRING(plan->table), (size_t)n);
        p += n;
    }
    if (plan->delivery_mode >= 0) *p++ = (unsigned char)plan->delivery_mode;
    if (plan->message_id != NULL) {
        *p++ = (unsigned char)plan->message_id_size;
        memcpy(p, plan->message_id, (size_t)plan->message_id_size);
        p += plan->message_id_size;
    }
    if (plan->flags & FLAG_TIMESTAMP) {
        put64(p, plan->timestamp);
        p += 8;
    }
    *p++ = FRAME_END;
    const unsigned char *body = (const unsigned char *)plan->body.buf;
    for (Py_ssize_t at = 0; at < length; at += plan->chunk) {
        Py_ssize_t n = length - at < plan->chunk ? length - at : plan->chunk;
        p[0] = 3;
        put16(p + 1, plan->channel);
        put32(p + 3, (uint32_t)n);
        if (head_only) return;
        memcpy(p + 7, body + at, (size_t)n);
        p[7 + n] = FRAME_END;
        p += 8 + n;
    }
}

static PyObject *Template_encode(Template *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    MessageArgs m;
    Plan plan;
    if (parse_message_args(args, nargs, kwnames, 0, &m, "encode") < 0) return NULL;
    if (plan_message(self, &m, &plan) < 0) {
        plan_release(&plan);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, plan.total);
    if (out != NULL) write_message(&plan, (unsigned char *)PyBytes_AS_STRING(out), 0);
    plan_release(&plan);
    return out;
}

static PyObject *encode_into(Template *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, int head_only) {
    MessageArgs m;
    Plan plan;
    const char *fname = head_only ? "encode_head_into" : "encode_into";
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "%s() missing required argument 'out'", fname);
        return NULL;
    }
    PyObject *out = args[0];
    if (!PyByteArray_Check(out)) {
        PyErr_Format(PyExc_TypeError, "out must be a bytearray, not %.100s", Py_TYPE(out)->tp_name);
        return NULL;
    }
    if (parse_message_args(args, nargs, kwnames, 1, &m, fname) < 0) return NULL;
    if (plan_message(self, &m, &plan) < 0) {
        plan_release(&plan);
        return NULL;
    }
    Py_ssize_t length = plan.body.len, size = plan.total;
    if (head_only) {
        if (length < 1 || length > plan.chunk) {
            PyErr_Format(PyExc_ValueError, "a body of %zd bytes is not 1..%zd (one frame)", length,
                         plan.chunk);
            plan_release(&plan);
            return NULL;
        }
        size -= length + 1;
    }
    Py_ssize_t start = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, start + size) < 0) {
        plan_release(&plan);
        return NULL;
    }
    write_message(&plan, (unsigned char *)PyByteArray_AS_STRING(out) + start, head_only);
    Py_ssize_t total = plan.total;
    plan_release(&plan);
    return PyLong_FromSsize_t(total);
}

static PyObject *Template_encode_into(Template *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames) {
    return encode_into(self, args, nargs, kwnames, 0);
}

static PyObject *Template_encode_head_into(Template *self, PyObject *const *args, Py_ssize_t nargs,
                                           PyObject *kwnames) {
    return encode_into(self, args, nargs, kwnames, 1);
}

static PyObject *Template_get_int(Template *self, void *which) {
    switch ((int)(intptr_t)which) {
    case 0: return PyLong_FromUnsignedLong(self->channel);
    case 1: return PyLong_FromSsize_t(self->frame_max);
    case 2: return PyBool_FromLong(self->mandatory);
    default:
        if (self->delivery_mode < 0) Py_RETURN_NONE;
        return PyLong_FromLong(self->delivery_mode);
    }
}

static PyObject *Template_get_obj(Template *self, void *which) {
    PyObject *value;
    switch ((int)(intptr_t)which) {
    case 0: value = self->exchange; break;
    case 1: value = self->routing_key; break;
    default: value = self->content_type_arg; break;
    }
    if (value == NULL) Py_RETURN_NONE;
    Py_INCREF(value);
    return value;
}

static PyMethodDef Template_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))Template_encode, METH_FASTCALL | METH_KEYWORDS,
     "encode(body, message_id=None, timestamp=None, headers=None) -> bytes\n\n"
     "The method, content header and body frames of one message, as one bytes object."},
    {"encode_into", (PyCFunction)(void (*)(void))Template_encode_into,
     METH_FASTCALL | METH_KEYWORDS,
     "encode_into(out, body, message_id=None, timestamp=None, headers=None) -> int\n\n"
     "Append the frames of one message to the bytearray out; returns how many bytes."},
    {"encode_head_into", (PyCFunction)(void (*)(void))Template_encode_head_into,
     METH_FASTCALL | METH_KEYWORDS,
     "encode_head_into(out, body, message_id=None, timestamp=None, headers=None) -> int\n\n"
     "Append the frames of one message whose body fits one frame, up to the body's bytes (the caller\n"
     "sends the body and the frame end 0xCE next); returns how many bytes the whole message takes."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Template_getset[] = {
    {"channel", (getter)Template_get_int, NULL, NULL, (void *)0},
    {"frame_max", (getter)Template_get_int, NULL, NULL, (void *)1},
    {"mandatory", (getter)Template_get_int, NULL, NULL, (void *)2},
    {"delivery_mode", (getter)Template_get_int, NULL, NULL, (void *)3},
    {"exchange", (getter)Template_get_obj, NULL, NULL, (void *)0},
    {"routing_key", (getter)Template_get_obj, NULL, NULL, (void *)1},
    {"content_type", (getter)Template_get_obj, NULL, NULL, (void *)2},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject TemplateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rabbitipc.wire._speedups.PublishTemplate",
    .tp_basicsize = sizeof(Template),
    .tp_dealloc = (destructor)Template_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PublishTemplate(channel, exchange, routing_key, mandatory=False, *, "
              "frame_max=131072, content_type=None, delivery_mode=None)\n\n"
              "Basic.Publish to one route on one channel, encoded once; encode() adds properties "
              "and body.",
    .tp_methods = Template_methods,
    .tp_getset = Template_getset,
    .tp_init = (initproc)Template_init,
    .tp_new = PyType_GenericNew,
};

/* ---------------------------------------------------------------- decode */

/* A short string at *pos (str when UTF-8, else bytes, as pika); NULL without an exception when
 * it does not fit before end, NULL with one on memory errors. */
static PyObject *take_short(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end) {
    if (*pos >= end) return NULL;
    Py_ssize_t n = buf[*pos];
    if (*pos + 1 + n > end) return NULL;
    const char *raw = (const char *)buf + *pos + 1;
    PyObject *value = PyUnicode_DecodeUTF8(raw, n, NULL);
    if (value == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
        PyErr_Clear();
        value = PyBytes_FromStringAndSize(raw, n);
    }
    *pos += 1 + n;
    return value;
}

/* The short strings that repeat on every delivery (consumer tag, exchange, routing key, content
 * type): the last object seen in each slot is reused while the bytes are the same, which saves
 * an allocation and a UTF-8 decode each. The GIL is held throughout decode(). */
enum { SLOT_FIRST, SLOT_EXCHANGE, SLOT_ROUTING_KEY, SLOT_CONTENT_TYPE, N_SLOTS };
static struct {
    Py_ssize_t size;
    char raw[255];
    PyObject *value;
} short_cache[N_SLOTS];

static PyObject *take_short_cached(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end,
                                   int slot) {
    if (*pos >= end) return NULL;
    Py_ssize_t n = buf[*pos];
    if (*pos + 1 + n > end) return NULL;
    if (short_cache[slot].value != NULL && short_cache[slot].size == n &&
        memcmp(short_cache[slot].raw, buf + *pos + 1, (size_t)n) == 0) {
        *pos += 1 + n;
        Py_INCREF(short_cache[slot].value);
        return short_cache[slot].value;
    }
    PyObject *value = take_short(buf, pos, end);
    if (value != NULL) {
        memcpy(short_cache[slot].raw, buf + *pos - n, (size_t)n);
        short_cache[slot].size = n;
        Py_INCREF(value);
        Py_XSETREF(short_cache[slot].value, value);
    }
    return value;
}

/* The BasicProperties encoded in buf[pos:end], decoded as pika decodes them; NULL without an
 * exception when malformed (pika's own path then decides), NULL with one on memory errors. */
static PyObject *take_properties(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end) {
    unsigned flags = 0;
    int word = 0;
    for (;;) {
        if (pos + 2 > end) return NULL;
        unsigned partial = get16(buf + pos);
        pos += 2;
        if (word == 0) flags = partial;
        word++;
        if (!(partial & 1)) break;
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) return NULL;
    for (int i = 0; i < N_PROPS; i++) {
        PyObject *value = NULL;
        if (!(flags & (1u << (15 - i)))) {
            value = Py_None;
            Py_INCREF(value);
        } else {
            switch (prop_kinds[i]) {
            case P_SHORT:
                value = i == 0 ? take_short_cached(buf, &pos, end, SLOT_CONTENT_TYPE)
                               : take_short(buf, &pos, end);
                break;
            case P_OCTET:
                if (pos + 1 <= end) value = PyLong_FromLong(buf[pos++]);
                break;
            case P_U64:
                if (pos + 8 <= end) {
                    value = PyLong_FromUnsignedLongLong(get64(buf + pos));
                    pos += 8;
                }
                break;
            case P_TABLE: {
                PyObject *encoded = PyBytes_FromStringAndSize((const char *)buf + pos, end - pos);
                if (encoded == NULL) break;
                PyObject *res = PyObject_CallFunction(decode_table_fn, "Oi", encoded, 0);
                Py_DECREF(encoded);
                if (res == NULL) {
                    if (PyErr_ExceptionMatches(PyExc_Exception)) PyErr_Clear();
                    break;
                }
                Py_ssize_t used;
                if (PyTuple_Check(res) && PyTuple_GET_SIZE(res) == 2 &&
                    (used = PyLong_AsSsize_t(PyTuple_GET_ITEM(res, 1))) >= 0 &&
                    used <= end - pos) {
                    value = PyTuple_GET_ITEM(res, 0);
                    Py_INCREF(value);
                    pos += used;
                }
                PyErr_Clear();
                Py_DECREF(res);
                break;
            }
            }
            if (value == NULL) {
                Py_DECREF(dict);
                return NULL;
            }
        }
        int rc = PyDict_SetItem(dict, prop_keys[i], value);
        Py_DECREF(value);
        if (rc < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    PyObject *props = PyBaseObject_Type.tp_new((PyTypeObject *)BasicProperties, empty_tuple, NULL);
    if (props == NULL || PyObject_GenericSetDict(props, dict, NULL) < 0) {
        Py_XDECREF(props);
        Py_DECREF(dict);
        return NULL;
    }
    Py_DECREF(dict);
    return props;
}

/* Where the walk of a message's body frames stopped when the message was not all there yet, so that
 * a Decoder's next call resumes there instead of walking every frame again: a message of many frames
 * arriving in many reads is walked once, not once per read. Offsets count from the message's method
 * frame, which the caller keeps (data[end:]) and may move; the message is known again by its method
 * and header frames (a delivery's carry its delivery tag). */
typedef struct {
    unsigned char *head; /* the method and header frames, as seen (PyMem) */
    Py_ssize_t head_size, head_capacity;
    Py_ssize_t walked; /* offset of the first body frame not yet walked */
    uint64_t got;      /* body bytes in the frames walked */
    unsigned long long frames_walked; /* body frame heads read by walks, over the decoder's life */
} Resume;

static void resume_save(Resume *rs, const unsigned char *message, Py_ssize_t head_size,
                        Py_ssize_t walked, uint64_t got) {
    if (head_size > rs->head_capacity) {
        unsigned char *grown = PyMem_Realloc(rs->head, (size_t)head_size);
        if (grown == NULL) { /* no memory for a hint: the next call walks from the start */
            rs->head_size = 0;
            return;
        }
        rs->head = grown;
        rs->head_capacity = head_size;
    }
    memcpy(rs->head, message, (size_t)head_size);
    rs->head_size = head_size;
    rs->walked = walked;
    rs->got = got;
}

/* The header and body frames from buf[pos:], after the method frame at buf[start:]: DONE with
 * *props, *body and *next set, PARTIAL or OTHER, or -1 with an exception. rs (or NULL) is the
 * caller's Decoder state.
 *
 * Memory safety: the frames are read only within buf[:total], every size checked against that
 * bound where it is used. The body is copied right after the walk, before anything that can run
 * Python code (take_properties calls pika's decode_table, and with it whatever another thread or a
 * finaliser does), and the copy checks each frame again as it goes: sizes read in one pass are never
 * trusted by the next after the buffer could have been written to. */
static int take_content(const unsigned char *buf, Py_ssize_t total, Py_ssize_t start, Py_ssize_t pos,
                        unsigned channel, Resume *rs, PyObject **props, PyObject **body,
                        Py_ssize_t *next) {
    if (pos + 7 > total) return PARTIAL;
    if (buf[pos] != 2 || get16(buf + pos + 1) != channel) return OTHER;
    uint32_t hsize = get32(buf + pos + 3);
    if (hsize < 14) return OTHER;
    if ((uint64_t)hsize + 8 > (uint64_t)(total - pos)) return PARTIAL; /* no overflow on 32 bits */
    Py_ssize_t hend = pos + 7 + (Py_ssize_t)hsize;
    if (buf[hend] != FRAME_END || get16(buf + pos + 7) != 60) return OTHER;
    uint64_t body_size = get64(buf + pos + 11);
    Py_ssize_t head_size = hend + 1 - start;
    /* Walk the body frames first: the body is built only once it is all here. */
    Py_ssize_t at = hend + 1;
    uint64_t got = 0;
    int resumed = 0;
    if (rs != NULL && rs->head_size == head_size && rs->walked >= head_size &&
        rs->walked <= total - start && rs->got <= body_size &&
        memcmp(rs->head, buf + start, (size_t)head_size) == 0) {
        at = start + rs->walked;
        got = rs->got;
        resumed = 1;
    }
    if (rs != NULL) rs->head_size = 0; /* used (or not the message): forgotten unless saved again */
walk:
    while (got < body_size) {
        if (at + 7 > total) goto partial;
        if (rs != NULL) rs->frames_walked++;
        if (buf[at] != 3 || get16(buf + at + 1) != channel) return OTHER;
        uint64_t n = get32(buf + at + 3);
        if (got + n > body_size) return OTHER;
        if (n + 8 > (uint64_t)(total - at)) goto partial;
        Py_ssize_t bend = at + 7 + (Py_ssize_t)n;
        if (buf[bend] != FRAME_END) return OTHER;
        got += n;
        at = bend + 1;
    }
    /* All here: body_size <= total, as the frames holding it are in buf[:total]. */
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)body_size);
    if (b == NULL) return -1;
    char *dst = PyBytes_AS_STRING(b);
    Py_ssize_t from = hend + 1;
    uint64_t copied = 0;
    while (copied < body_size) {
        if (from + 7 > total || buf[from] != 3 || get16(buf + from + 1) != channel) break;
        uint64_t n = get32(buf + from + 3);
        if (copied + n > body_size || n + 8 > (uint64_t)(total - from) ||
            buf[from + 7 + (Py_ssize_t)n] != FRAME_END)
            break;
        memcpy(dst + copied, buf + from + 7, (size_t)n);
        copied += n;
        from += 8 + (Py_ssize_t)n;
    }
    if (copied != body_size || from != at) { /* not the frames walked */
        Py_DECREF(b);
        if (!resumed) return OTHER; /* only a writer racing this call gets here */
        resumed = 0; /* the hint was not this message's after all: walk it from its first frame */
        at = hend + 1;
        got = 0;
        goto walk;
    }
    PyObject *p = take_properties(buf, pos + 19, hend);
    if (p == NULL) {
        Py_DECREF(b);
        return PyErr_Occurred() ? -1 : OTHER;
    }
    *props = p;
    *body = b;
    *next = at;
    return DONE;
partial:
    if (rs != NULL && at > hend + 1) /* whole body frames walked: resume after them next time */
        resume_save(rs, buf + start, head_size, at - start, got);
    return PARTIAL;
}

static PyObject *finish(PyObject *events, Py_ssize_t end, int status) {
    PyObject *result = Py_BuildValue("(Nni)", events, end, status);
    return result;
}

/* Decode one Deliver or Return method with its content into *event; returns DONE, PARTIAL,
 * OTHER or -1 with an exception. */
static int take_message(const unsigned char *buf, Py_ssize_t total, Py_ssize_t pos, unsigned channel,
                        Py_ssize_t end, uint32_t method, Resume *rs, PyObject **event,
                        Py_ssize_t *next) {
    PyObject *f[5] = {NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t at = pos + 11;
    uint64_t tag = 0;
    int bits = 0;
    unsigned reply_code = 0;
    /* The content first: while a large message is still arriving, nothing is decoded. */
    int status = take_content(buf, total, pos, end + 1, channel, rs, &f[3], &f[4], next);
    if (status != DONE) goto fail;
    status = OTHER;
    if (method == 0x003C003C) { /* Basic.Deliver */
        if ((f[0] = take_short_cached(buf, &at, end, SLOT_FIRST)) == NULL) goto fail;
        if (at + 9 > end) goto fail;
        tag = get64(buf + at);
        bits = buf[at + 8] & 1;
        at += 9;
    } else { /* Basic.Return */
        if (at + 2 > end) goto fail;
        reply_code = get16(buf + at);
        at += 2;
        if ((f[0] = take_short(buf, &at, end)) == NULL) goto fail;
    }
    if ((f[1] = take_short_cached(buf, &at, end, SLOT_EXCHANGE)) == NULL) goto fail;
    if ((f[2] = take_short_cached(buf, &at, end, SLOT_ROUTING_KEY)) == NULL) goto fail;
    if (method == 0x003C003C)
        *event = Py_BuildValue("(iINKNNNNN)", DELIVER, channel, f[0], (unsigned long long)tag,
                               PyBool_FromLong(bits), f[1], f[2], f[3], f[4]);
    else
        *event = Py_BuildValue("(iIINNNNN)", RETURN, channel, reply_code, f[0], f[1], f[2], f[3],
                               f[4]);
    return *event == NULL ? -1 : DONE;
fail:
    for (int i = 0; i < 5; i++) Py_XDECREF(f[i]);
    if (PyErr_Occurred()) return -1;
    return status;
}

/* decode(data, start=0, end=None): the module's (rs NULL) or a Decoder's. */
static PyObject *decode_frames(Resume *rs, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "decode(data, start=0, end=None) takes 1 to 3 arguments");
        return NULL;
    }
    Py_ssize_t start = 0, end_arg = -1;
    if (nargs >= 2) {
        start = PyLong_AsSsize_t(args[1]);
        if (start == -1 && PyErr_Occurred()) return NULL;
    }
    if (nargs == 3 && args[2] != Py_None) {
        end_arg = PyLong_AsSsize_t(args[2]);
        if (end_arg == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t total = view.len;
    if (nargs == 3 && args[2] != Py_None) {
        if (end_arg < 0 || end_arg > total) {
            PyBuffer_Release(&view);
            PyErr_Format(PyExc_ValueError, "end %zd is outside 0..%zd", end_arg, total);
            return NULL;
        }
        total = end_arg;
    }
    if (start < 0 || start > total) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "start %zd is outside 0..%zd", start, total);
        return NULL;
    }
    PyObject *events = PyList_New(0);
    if (events == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t pos = start;
    int status;
    for (;;) {
        if (pos + 7 > total) {
            status = pos == total ? DONE : PARTIAL;
            break;
        }
        unsigned channel = get16(buf + pos + 1);
        uint32_t size32 = get32(buf + pos + 3);
        if ((uint64_t)size32 + 8 > (uint64_t)(total - pos)) { /* no overflow on 32 bits */
            status = PARTIAL;
            break;
        }
        Py_ssize_t size = (Py_ssize_t)size32;
        Py_ssize_t end = pos + 7 + size;
        if (buf[pos] != 1 || size < 4 || buf[end] != FRAME_END) {
            status = OTHER;
            break;
        }
        uint32_t method = get32(buf + pos + 7);
        PyObject *event = NULL;
        Py_ssize_t next = end + 1;
        if (method == 0x003C0050 || method == 0x003C0078) { /* Basic.Ack, Basic.Nack */
            if (size < 13) {
                status = OTHER;
                break;
            }
            uint64_t tag = get64(buf + pos + 11);
            int bits = buf[pos + 19];
            if (method == 0x003C0050)
                event = Py_BuildValue("(iIKN)", ACK, channel, (unsigned long long)tag,
                                      PyBool_FromLong(bits & 1));
            else
                event = Py_BuildValue("(iIKNN)", NACK, channel, (unsigned long long)tag,
                                      PyBool_FromLong(bits & 1), PyBool_FromLong(bits & 2));
            if (event == NULL) goto error;
        } else if (method == 0x003C003C || method == 0x003C0032) { /* Deliver, Return */
            int rc = take_message(buf, total, pos, channel, end, method, rs, &event, &next);
            if (rc < 0) goto error;
            if (rc != DONE) {
                status = rc;
                break;
            }
        } else {
            status = OTHER;
            break;
        }
        int rc = PyList_Append(events, event);
        Py_DECREF(event);
        if (rc < 0) goto error;
        pos = next;
    }
    PyBuffer_Release(&view);
    return finish(events, pos, status);
error:
    PyBuffer_Release(&view);
    Py_DECREF(events);
    return NULL;
}

static PyObject *wire_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    return decode_frames(NULL, args, nargs);
}

/* A Decoder: decode() for one stream, resuming the walk of a message not yet complete. */
typedef struct {
    PyObject_HEAD
    Resume rs;
} Decoder;

static void Decoder_dealloc(Decoder *self) {
    PyMem_Free(self->rs.head);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Decoder_decode(Decoder *self, PyObject *const *args, Py_ssize_t nargs) {
    return decode_frames(&self->rs, args, nargs);
}

static PyObject *Decoder_frames_walked(Decoder *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->rs.frames_walked);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))Decoder_decode, METH_FASTCALL,
     "decode(data, start=0, end=None) -> (events, end, status)\n\n"
     "As rabbitipc.wire.decode; after PARTIAL, the next call resumes the message where this one stopped."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Decoder_getset[] = {
    {"frames_walked", (getter)Decoder_frames_walked, NULL,
     "Body frame heads read while looking for the end of a message, over the decoder's life.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rabbitipc.wire._speedups.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Decoder()\n\nThe decode() of one incoming stream: a message arriving in many reads is "
              "walked once.",
    .tp_methods = Decoder_methods,
    .tp_getset = Decoder_getset,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------- JSON plain text */

/* True when no byte of data needs an escape inside a JSON string: none below 0x20, no quote,
   no backslash. With SSE2 (every x86-64) 64 bytes per step, the verdict taken once per step: a
   64 KiB payload in about 2 microseconds. Elsewhere eight bytes at a time (the classic
   has-zero-byte/has-less-than word tricks, exact for "is there such a byte"): a few microseconds,
   where a byte loop or bytes.translate takes 35. */
static int plain_bytes(const unsigned char *p, Py_ssize_t n, int *ascii) {
    Py_ssize_t i = 0;
    int high = 0; /* a byte >= 0x80 seen (UTF-8 beyond ASCII) */
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8(0x22), backslash = _mm_set1_epi8(0x5c),
                  below = _mm_set1_epi8(0x1f);
    __m128i highs = _mm_setzero_si128();
    for (; i + 64 <= n; i += 64) {
        __m128i bad = _mm_setzero_si128();
        for (int k = 0; k < 64; k += 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(p + i + k));
            /* x <= 0x1f, unsigned: min(x, 0x1f) == x */
            bad = _mm_or_si128(bad, _mm_cmpeq_epi8(_mm_min_epu8(x, below), x));
            bad = _mm_or_si128(bad, _mm_cmpeq_epi8(x, quote));
            bad = _mm_or_si128(bad, _mm_cmpeq_epi8(x, backslash));
            highs = _mm_or_si128(highs, x);
        }
        if (_mm_movemask_epi8(bad)) return 0;
    }
    high = _mm_movemask_epi8(highs) != 0;
#else
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    const uint64_t quotes = 0x22 * ones, backslashes = 0x5c * ones, spaces = 0x20 * ones;
    uint64_t seen = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        uint64_t q = x ^ quotes, b = x ^ backslashes;
        if ((((x - spaces) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs) return 0;
        seen |= x;
    }
    high = (seen & highs) != 0;
#endif
    for (; i < n; i++) {
        if (p[i] < 0x20 || p[i] == 0x22 || p[i] == 0x5c) return 0;
        high |= p[i] >= 0x80;
    }
    *ascii = !high;
    return 1;
}

static PyObject *wire_plain_json_text(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    int ascii;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    int plain = plain_bytes(view.buf, view.len, &ascii);
    PyBuffer_Release(&view);
    return PyBool_FromLong(plain);
}

/* The text of UTF-8 data that needs no escape in a JSON string, in one pass and one copy; None
   when it needs one; UnicodeDecodeError when it is not UTF-8 (as bytes.decode). */
static PyObject *wire_plain_json_str(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    int ascii;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *text;
    if (!plain_bytes(view.buf, view.len, &ascii)) {
        text = Py_NewRef(Py_None);
    } else if (ascii) {
        text = PyUnicode_New(view.len, 127);
        if (text != NULL) memcpy(PyUnicode_DATA(text), view.buf, (size_t)view.len);
    } else {
        text = PyUnicode_DecodeUTF8(view.buf, view.len, "strict");
    }
    PyBuffer_Release(&view);
    return text;
}

/* head + the UTF-8 of text + tail, when text needs no escape in a JSON string (else None): a JSON
   body around a long payload in one copy. For an ASCII str its UTF-8 is its own data (no copy). */
static PyObject *wire_plain_json_join(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[1]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "plain_json_join(head: bytes, text: str, tail: bytes)");
        return NULL;
    }
    Py_ssize_t n, h = PyBytes_GET_SIZE(args[0]), t = PyBytes_GET_SIZE(args[2]);
    const char *utf8 = PyUnicode_AsUTF8AndSize(args[1], &n);
    if (utf8 == NULL) return NULL;
    int ascii;
    if (!plain_bytes((const unsigned char *)utf8, n, &ascii)) Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, h + n + t);
    if (out == NULL) return NULL;
    char *p = PyBytes_AS_STRING(out);
    memcpy(p, PyBytes_AS_STRING(args[0]), (size_t)h);
    memcpy(p + h, utf8, (size_t)n);
    memcpy(p + h + n, PyBytes_AS_STRING(args[2]), (size_t)t);
    return out;
}

/* ---------------------------------------------------------------- module */

static PyMethodDef module_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))wire_decode, METH_FASTCALL,
     "decode(data, start=0, end=None) -> (events, end, status)\n\n"
     "Decode the frames in data[start:end] into event tuples; see rabbitipc.wire."},
    {"plain_json_text", wire_plain_json_text, METH_O,
     "plain_json_text(data) -> bool\n\n"
     "True when data (UTF-8) goes into a JSON string as it is: no control character, quote or backslash."},
    {"plain_json_str", wire_plain_json_str, METH_O,
     "plain_json_str(data) -> str | None\n\n"
     "str(data, 'utf-8') when plain_json_text(data), else None, in one pass."},
    {"plain_json_join", (PyCFunction)(void (*)(void))wire_plain_json_join, METH_FASTCALL,
     "plain_json_join(head, text, tail) -> bytes | None\n\n"
     "head + text.encode() + tail when the text needs no escape in a JSON string, else None, in one copy."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "The compiled AMQP 0-9-1 hot path; the interface is documented in rabbitipc.wire.", -1,
    module_methods, NULL, NULL, NULL, NULL};

static PyObject *import_attr(const char *module, const char *name) {
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) return NULL;
    PyObject *attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&TemplateType) < 0 || PyType_Ready(&DecoderType) < 0) return NULL;
    if ((BasicProperties = import_attr("pika.spec", "BasicProperties")) == NULL) return NULL;
    if ((encode_table_fn = import_attr("pika.data", "encode_table")) == NULL) return NULL;
    if ((decode_table_fn = import_attr("pika.data", "decode_table")) == NULL) return NULL;
    if ((ShortStringTooLong = import_attr("pika.exceptions", "ShortStringTooLong")) == NULL)
        return NULL;
    if ((empty_tuple = PyTuple_New(0)) == NULL) return NULL;
    if ((empty_bytes = PyBytes_FromStringAndSize(NULL, 0)) == NULL) return NULL;
    for (int i = 0; i < N_PROPS; i++)
        if ((prop_keys[i] = PyUnicode_InternFromString(prop_names[i])) == NULL) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&TemplateType);
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "PublishTemplate", (PyObject *)&TemplateType) < 0 ||
        PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) < 0 ||
        PyModule_AddIntConstant(m, "DELIVER", DELIVER) < 0 ||
        PyModule_AddIntConstant(m, "ACK", ACK) < 0 || PyModule_AddIntConstant(m, "NACK", NACK) < 0 ||
        PyModule_AddIntConstant(m, "RETURN", RETURN) < 0 ||
        PyModule_AddIntConstant(m, "DONE", DONE) < 0 ||
        PyModule_AddIntConstant(m, "PARTIAL", PARTIAL) < 0 ||
        PyModule_AddIntConstant(m, "OTHER", OTHER) < 0 ||
        PyModule_AddIntConstant(m, "FRAME_MIN_SIZE", FRAME_MIN_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
