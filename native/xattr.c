/*
 * lgetxattr for Node (which has no xattr API): overlayfs marks an opaque
 * directory of a container's upper dir with trusted.overlay.opaque="y", which
 * `docker diff` and `docker commit` must see (changes.ts).
 */
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

#define XA_PATH_MAX 4096
#define XA_VALUE_MAX 4096

static napi_value xa_throw(napi_env env, int err, const char *where) {
  char msg[XA_PATH_MAX + 64];
  snprintf(msg, sizeof msg, "%s: %s", where, strerror(err));
  napi_value code, m, e;
  napi_create_string_utf8(env, err == ENOENT ? "ENOENT" : "EXATTR", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, code, m, &e);
  napi_throw(env, e);
  return NULL;
}

/* lgetxattr(path, name): a Buffer, or null when the attribute is not set. */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  char path[XA_PATH_MAX], name[256];
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "path must be a string shorter than 4096 bytes");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, argv[1], name, sizeof name, &len) != napi_ok || len >= sizeof name - 1) {
    napi_throw_type_error(env, NULL, "name must be a short string");
    return NULL;
  }
  char value[XA_VALUE_MAX];
  ssize_t n = lgetxattr(path, name, value, sizeof value);
  napi_value out;
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) { napi_get_null(env, &out); return out; }
    return xa_throw(env, errno, path);
  }
  void *data;
  napi_create_buffer_copy(env, (size_t)n, value, &data, &out);
  return out;
}

void cove_xattr_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "lgetxattr", NULL, js_lgetxattr, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
