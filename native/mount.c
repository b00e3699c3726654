/*
 * mount(2) and umount2(2) for a container's root filesystem (src/kernel/mount.ts):
 * an overlay mount made in the daemon instead of by a spawned `mount` (a
 * fork + exec + libmount per container start, 5-40 ms here under load; the
 * syscall itself is well under a millisecond for a few layers).
 *
 * Synchronous, on the calling (main) thread: mounts are per mount namespace,
 * not per thread, and every thread of the daemon shares it.
 *   mountOverlay(target, data)   mount("overlay", target, "overlay", 0, data)
 *   unmount(target, detach)      umount2(target, detach ? MNT_DETACH : 0)
 * Both throw Error with code "E<errno>" and the strerror text.
 */
#include <node_api.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#define MT_PATH_MAX 4096
/* The kernel copies at most one page of mount data. */
#define MT_DATA_MAX 4096

static napi_value mt_throw(napi_env env, int err, const char *what, const char *path) {
  char msg[MT_PATH_MAX + 128];
  snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "E%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

static int mt_str(napi_env env, napi_value v, char *buf, size_t cap, const char *what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return -1;
  }
  if (len >= cap - 1) {
    napi_throw_range_error(env, NULL, what);
    return -1;
  }
  return 0;
}

static napi_value js_mount_overlay(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  static char target[MT_PATH_MAX], data[MT_DATA_MAX];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "mountOverlay(target, data)");
    return NULL;
  }
  if (mt_str(env, argv[0], target, sizeof target, "target must be a path shorter than 4096 bytes") < 0) return NULL;
  if (mt_str(env, argv[1], data, sizeof data, "overlay options must be shorter than a page (4096 bytes)") < 0)
    return NULL;
  if (mount("overlay", target, "overlay", 0, data) < 0) return mt_throw(env, errno, "mount overlay on", target);
  return NULL;
}

static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  static char target[MT_PATH_MAX];
  bool detach = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || mt_str(env, argv[0], target, sizeof target, "target must be a path shorter than 4096 bytes") < 0)
    return NULL;
  if (argc > 1) napi_get_value_bool(env, argv[1], &detach);
  if (umount2(target, detach ? MNT_DETACH : 0) < 0) return mt_throw(env, errno, "umount", target);
  return NULL;
}

void cove_mount_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "mountOverlay", NULL, js_mount_overlay, NULL, NULL, NULL, napi_default, NULL },
    { "unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
