/* Unit tests for src/net/connlimit.c: total and per-address limits, IPv4-mapped
 * peers counted as IPv4, IPv6 counted per /64, unix peers only in the total, slots
 * given back, and counts from several threads. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>
#include <uv.h>

#include <cmocka.h>

#include "common/error.h"
#include "net/connlimit.h"

static struct sockaddr_storage addr(const char *text) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
  } else {
    assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
    sin6->sin6_family = AF_INET6;
  }
  return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_per_ip(void **state) {
  (void)state;
  tusc_connlimit_t *l = NULL;
  assert_int_equal(tusc_connlimit_new(0, 2, &l), 0);
  struct sockaddr_storage a = addr("192.0.2.1"), mapped = addr("::ffff:192.0.2.1"),
                          b = addr("192.0.2.2");
  tusc_connlimit_slot_t s1, s2, s3, s4;
  assert_int_equal(tusc_connlimit_acquire(l, SA(a), &s1), 0);
  assert_true(s1.held && s1.keyed);
  assert_int_equal(tusc_connlimit_acquire(l, SA(mapped), &s2), 0); /* same client */
  assert_int_equal(tusc_connlimit_acquire(l, SA(a), &s3), TUSC_ETOO_MANY_CONNECTIONS);
  assert_false(s3.held);
  assert_int_equal(tusc_connlimit_count_for(l, SA(a)), 2);
  assert_int_equal(tusc_connlimit_acquire(l, SA(b), &s4), 0);
  assert_int_equal(tusc_connlimit_total(l), 3);
  tusc_connlimit_release(l, &s1);
  tusc_connlimit_release(l, &s1); /* twice is harmless */
  tusc_connlimit_release(l, &s3); /* never held */
  assert_int_equal(tusc_connlimit_count_for(l, SA(a)), 1);
  assert_int_equal(tusc_connlimit_acquire(l, SA(a), &s3), 0);
  tusc_connlimit_release(l, &s2);
  tusc_connlimit_release(l, &s3);
  tusc_connlimit_release(l, &s4);
  assert_int_equal(tusc_connlimit_total(l), 0);
  assert_int_equal(tusc_connlimit_count_for(l, SA(a)), 0);
  tusc_connlimit_free(l);
}

static void test_ipv6_per_64_and_unix(void **state) {
  (void)state;
  tusc_connlimit_t *l = NULL;
  assert_int_equal(tusc_connlimit_new(0, 1, &l), 0);
  struct sockaddr_storage x = addr("2001:db8:1:2::1"), y = addr("2001:db8:1:2::ffff"),
                          z = addr("2001:db8:1:3::1");
  tusc_connlimit_slot_t s[6];
  assert_int_equal(tusc_connlimit_acquire(l, SA(x), &s[0]), 0);
  assert_int_equal(tusc_connlimit_acquire(l, SA(y), &s[1]), TUSC_ETOO_MANY_CONNECTIONS);
  assert_int_equal(tusc_connlimit_acquire(l, SA(z), &s[2]), 0);
  struct sockaddr_un un;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  assert_int_equal(tusc_connlimit_acquire(l, (const struct sockaddr *)&un, &s[3]), 0);
  assert_int_equal(tusc_connlimit_acquire(l, NULL, &s[4]), 0);
  assert_false(s[3].keyed);
  assert_int_equal(tusc_connlimit_total(l), 4);
  for (int i = 0; i < 5; i++)
    tusc_connlimit_release(l, &s[i]);
  assert_int_equal(tusc_connlimit_total(l), 0);
  tusc_connlimit_free(l);
}

static void test_total(void **state) {
  (void)state;
  tusc_connlimit_t *l = NULL;
  assert_int_equal(tusc_connlimit_new(3, 0, &l), 0);
  tusc_connlimit_slot_t s[4];
  char text[32];
  for (int i = 0; i < 3; i++) {
    snprintf(text, sizeof(text), "198.51.100.%d", i + 1);
    struct sockaddr_storage a = addr(text);
    assert_int_equal(tusc_connlimit_acquire(l, SA(a), &s[i]), 0);
  }
  struct sockaddr_storage other = addr("203.0.113.9");
  assert_int_equal(tusc_connlimit_acquire(l, SA(other), &s[3]), TUSC_ETOO_MANY_CONNECTIONS);
  tusc_connlimit_release(l, &s[1]);
  assert_int_equal(tusc_connlimit_acquire(l, SA(other), &s[3]), 0);
  tusc_connlimit_release(l, &s[0]);
  tusc_connlimit_release(l, &s[2]);
  tusc_connlimit_release(l, &s[3]);
  /* NULL limit admits everything */
  assert_int_equal(tusc_connlimit_acquire(NULL, SA(other), &s[0]), 0);
  assert_false(s[0].held);
  tusc_connlimit_free(l);
  tusc_connlimit_free(NULL);
}

struct churn {
  tusc_connlimit_t *l;
  int refused;
};

static void churn_thread(void *arg) {
  struct churn *c = arg;
  struct sockaddr_storage a = addr("192.0.2.77");
  for (int i = 0; i < 20000; i++) {
    tusc_connlimit_slot_t s;
    if (tusc_connlimit_acquire(c->l, SA(a), &s) == 0)
      tusc_connlimit_release(c->l, &s);
    else
      c->refused++;
  }
}

static void test_threads(void **state) {
  (void)state;
  tusc_connlimit_t *l = NULL;
  assert_int_equal(tusc_connlimit_new(0, 0, &l), 0);
  struct churn c[4];
  uv_thread_t t[4];
  for (int i = 0; i < 4; i++) {
    c[i].l = l;
    c[i].refused = 0;
    assert_int_equal(uv_thread_create(&t[i], churn_thread, &c[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    uv_thread_join(&t[i]);
    assert_int_equal(c[i].refused, 0);
  }
  assert_int_equal(tusc_connlimit_total(l), 0);
  tusc_connlimit_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_per_ip),
      cmocka_unit_test(test_ipv6_per_64_and_unix),
      cmocka_unit_test(test_total),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
