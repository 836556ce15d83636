/*
 * The C ABI from C: a transaction round trip, concurrent submits with callbacks, and failure
 * paths. Run by tests/c_program.rs as `capi_test DIR`; prints one line per part and exits 0
 * when every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bstore.h"

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, \
              #cond, bstore_last_error());                                             \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

#define OK(call) CHECK((call) == 0)

static char store_path[4096];

static void fill(uint8_t *data, size_t len, unsigned seed) {
  for (size_t i = 0; i < len; i++) data[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 9));
}

static void round_trip(void) {
  bstore_store *store = NULL;
  OK(bstore_mkfs_file(store_path, 256u << 20));
  OK(bstore_open(store_path, &store));

  size_t len = 300000;
  uint8_t *data = malloc(len);
  CHECK(data != NULL);
  fill(data, len, 1);
  bstore_txn *txn = bstore_txn_new();
  OK(bstore_txn_create_collection(txn, BSTORE_STR("pg.1")));
  OK(bstore_txn_write(txn, BSTORE_STR("pg.1"), BSTORE_STR("obj"), 0, BSTORE_BYTES(data, len)));
  OK(bstore_txn_setattr(txn, BSTORE_STR("pg.1"), BSTORE_STR("obj"), BSTORE_STR("_"),
                        BSTORE_STR("object info")));
  OK(bstore_txn_omap_setheader(txn, BSTORE_STR("pg.1"), BSTORE_STR("obj"), BSTORE_STR("hdr")));
  OK(bstore_txn_omap_setkey(txn, BSTORE_STR("pg.1"), BSTORE_STR("obj"), BSTORE_STR("key"),
                            BSTORE_STR("value")));
  OK(bstore_txn_clone(txn, BSTORE_STR("pg.1"), BSTORE_STR("obj"), BSTORE_STR("obj.snap")));
  OK(bstore_apply(store, txn));
  bstore_txn_free(txn);

  for (int pass = 0; pass < 2; pass++) {
    bstore_buf buf = {0};
    OK(bstore_read(store, BSTORE_STR("pg.1"), BSTORE_STR("obj"), 0, len, &buf));
    CHECK(buf.len == len && memcmp(buf.data, data, len) == 0);
    bstore_buf_free(&buf);
    CHECK(buf.data == NULL && buf.len == 0);

    OK(bstore_getattr(store, BSTORE_STR("pg.1"), BSTORE_STR("obj"), BSTORE_STR("_"), &buf));
    CHECK(buf.len == strlen("object info") && memcmp(buf.data, "object info", buf.len) == 0);
    bstore_buf_free(&buf);
    OK(bstore_omap_get(store, BSTORE_STR("pg.1"), BSTORE_STR("obj"), BSTORE_STR("key"), &buf));
    CHECK(buf.len == 5 && memcmp(buf.data, "value", 5) == 0);
    bstore_buf_free(&buf);

    bstore_object_stat stat;
    OK(bstore_stat(store, BSTORE_STR("pg.1"), BSTORE_STR("obj"), &stat));
    CHECK(stat.size == len && stat.stored_bytes == len);
    CHECK(bstore_exists(store, BSTORE_STR("pg.1"), BSTORE_STR("obj.snap")) == 1);
    CHECK(bstore_exists(store, BSTORE_STR("pg.1"), BSTORE_STR("nothing")) == 0);

    bstore_statfs_t statfs;
    OK(bstore_statfs(store, &statfs));
    CHECK(statfs.object_count == 2 && statfs.stored_bytes == 2 * len);
    CHECK(statfs.allocated_bytes < 2 * len); /* the clone shares the data */
    bstore_collection_statfs pool;
    OK(bstore_pool_statfs(store, BSTORE_STR("pg."), &pool));
    CHECK(pool.collections == 1 && pool.object_count == 2);

    bstore_names names = {0};
    bstore_buf next = {0};
    CHECK(bstore_list_objects(store, BSTORE_STR("pg.1"), BSTORE_BYTES(NULL, 0),
                              BSTORE_BYTES(NULL, 0), 1, &names, &next) == 1);
    CHECK(names.count == 1 && names.names[0].len == 3 && memcmp(names.names[0].data, "obj", 3) == 0);
    CHECK(next.len == 8 && memcmp(next.data, "obj.snap", 8) == 0);
    bstore_names_free(&names);
    bstore_buf_free(&next);
    CHECK(bstore_list_collections(store, &names) == 1);
    bstore_names_free(&names);

    /* The second pass reads what a reopened store finds. */
    OK(bstore_close(store));
    store = NULL;
    if (pass == 0) OK(bstore_open(store_path, &store));
  }
  bstore_fsck_report report;
  OK(bstore_fsck(store_path, true, &report));
  CHECK(report.errors == 0 && report.objects == 2 && report.collections == 1);
  free(data);
  printf("round trip: ok\n");
}

enum { THREADS = 4, PER_THREAD = 50 };

struct progress {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  int applied, committed, failed;
};

static struct progress progress = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static void on_applied(void *ctx) {
  struct progress *p = ctx;
  pthread_mutex_lock(&p->lock);
  p->applied++;
  pthread_mutex_unlock(&p->lock);
}

static void on_commit(void *ctx, int result, const char *message) {
  struct progress *p = ctx;
  pthread_mutex_lock(&p->lock);
  if (result == 0) {
    p->committed++;
  } else {
    p->failed++;
    fprintf(stderr, "commit failed: %d %s\n", result, message);
  }
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->lock);
}

struct writer {
  bstore_store *store;
  int id;
};

static void object_name(char *name, size_t size, int thread, int i) {
  snprintf(name, size, "t%d-o%03d", thread, i);
}

static void *write_objects(void *arg) {
  struct writer *w = arg;
  uint8_t data[5000];
  for (int i = 0; i < PER_THREAD; i++) {
    char name[32];
    object_name(name, sizeof name, w->id, i);
    fill(data, sizeof data, (unsigned)(w->id * 1000 + i));
    bstore_txn *txn = bstore_txn_new();
    OK(bstore_txn_write(txn, BSTORE_STR("shared"), BSTORE_STR(name), 0,
                        BSTORE_BYTES(data, sizeof data)));
    OK(bstore_submit(w->store, txn, on_applied, on_commit, &progress));
    bstore_txn_free(txn);
  }
  return NULL;
}

static void concurrent_submit(void) {
  bstore_store *store = NULL;
  OK(bstore_open(store_path, &store));
  bstore_txn *txn = bstore_txn_new();
  OK(bstore_txn_create_collection(txn, BSTORE_STR("shared")));
  OK(bstore_apply(store, txn));
  bstore_txn_free(txn);

  pthread_t threads[THREADS];
  struct writer writers[THREADS];
  for (int t = 0; t < THREADS; t++) {
    writers[t] = (struct writer){store, t};
    CHECK(pthread_create(&threads[t], NULL, write_objects, &writers[t]) == 0);
  }
  for (int t = 0; t < THREADS; t++) CHECK(pthread_join(threads[t], NULL) == 0);
  pthread_mutex_lock(&progress.lock);
  while (progress.committed + progress.failed < THREADS * PER_THREAD)
    pthread_cond_wait(&progress.changed, &progress.lock);
  CHECK(progress.applied == THREADS * PER_THREAD);
  CHECK(progress.committed == THREADS * PER_THREAD && progress.failed == 0);
  pthread_mutex_unlock(&progress.lock);

  uint8_t expected[5000];
  for (int t = 0; t < THREADS; t++) {
    for (int i = 0; i < PER_THREAD; i++) {
      char name[32];
      object_name(name, sizeof name, t, i);
      fill(expected, sizeof expected, (unsigned)(t * 1000 + i));
      bstore_buf buf = {0};
      OK(bstore_read(store, BSTORE_STR("shared"), BSTORE_STR(name), 0, sizeof expected, &buf));
      CHECK(buf.len == sizeof expected && memcmp(buf.data, expected, buf.len) == 0);
      bstore_buf_free(&buf);
    }
  }
  OK(bstore_close(store));
  printf("concurrent submit: ok (%d transactions from %d threads)\n", THREADS * PER_THREAD,
         THREADS);
}

static void failure_paths(void) {
  bstore_store *store = NULL;
  OK(bstore_open(store_path, &store));

  /* A write into a missing collection: -ENOENT, naming it, and nothing changed. */
  bstore_txn *txn = bstore_txn_new();
  OK(bstore_txn_write(txn, BSTORE_STR("pg.1"), BSTORE_STR("new"), 0, BSTORE_STR("x")));
  OK(bstore_txn_write(txn, BSTORE_STR("pg.404"), BSTORE_STR("obj"), 0, BSTORE_STR("x")));
  CHECK(bstore_apply(store, txn) == -ENOENT);
  CHECK(strstr(bstore_last_error(), "pg.404") != NULL);
  CHECK(bstore_submit(store, txn, on_applied, on_commit, &progress) == -ENOENT);
  bstore_txn_free(txn);
  CHECK(bstore_exists(store, BSTORE_STR("pg.1"), BSTORE_STR("new")) == 0);

  txn = bstore_txn_new();
  OK(bstore_txn_create_collection(txn, BSTORE_STR("pg.1")));
  CHECK(bstore_apply(store, txn) == -EEXIST);
  bstore_txn_free(txn);

  bstore_buf buf = {0};
  CHECK(bstore_read(store, BSTORE_STR("pg.1"), BSTORE_STR("missing"), 0, 1, &buf) == -ENOENT);
  CHECK(strstr(bstore_last_error(), "missing") != NULL);
  CHECK(bstore_getattr(store, BSTORE_STR("pg.1"), BSTORE_STR("obj"), BSTORE_STR("nope"), &buf) ==
        -ENODATA);
  CHECK(bstore_read(store, BSTORE_STR("pg.1"), BSTORE_STR("obj"), 0, 1, NULL) == -EINVAL);
  CHECK(bstore_read(NULL, BSTORE_STR("pg.1"), BSTORE_STR("obj"), 0, 1, &buf) == -EINVAL);
  CHECK(bstore_txn_touch(NULL, BSTORE_STR("pg.1"), BSTORE_STR("obj")) == -EINVAL);
  txn = bstore_txn_new();
  CHECK(bstore_txn_touch(txn, BSTORE_BYTES(NULL, 3), BSTORE_STR("obj")) == -EINVAL);
  OK(bstore_txn_touch(txn, BSTORE_STR("pg.1"), BSTORE_BYTES(NULL, 0)));
  CHECK(bstore_apply(store, txn) == -EINVAL); /* an empty object name */
  bstore_txn_free(txn);
  CHECK(bstore_open(NULL, &store) == -EINVAL);
  OK(bstore_close(store));

  /* A directory that holds no store. */
  bstore_store *none = NULL;
  char elsewhere[4200];
  snprintf(elsewhere, sizeof elsewhere, "%s.none", store_path);
  int result = bstore_open(elsewhere, &none);
  CHECK(result < 0 && none == NULL);
  CHECK(strlen(bstore_last_error()) > 0);
  /* mkfs over an existing store refuses. */
  CHECK(bstore_mkfs_file(store_path, 256u << 20) < 0);
  printf("failure paths: ok\n");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  snprintf(store_path, sizeof store_path, "%s/store", argv[1]);
  round_trip();
  concurrent_submit();
  failure_paths();
  return 0;
}
