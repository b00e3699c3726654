/*
 * Giving memory back when the daemon goes quiet (src/daemon/idle-memory.ts).
 *
 *   releaseMemory()   V8's low-memory notification on the calling isolate (full
 *                     garbage collections that also compact and release the
 *                     heap's free pages and drop compiled code no one runs),
 *                     then glibc's malloc_trim(0) (free memory at the top of
 *                     every arena and whole free pages inside them back to the
 *                     kernel). Returns nothing; takes tens of milliseconds on
 *                     the main thread, so it is called once per quiet period.
 *
 * The only C++ of the addon: V8's Isolate API has no C or N-API form
 * (node's --expose-gc gc() runs one full collection without the memory
 * reducer's compaction and does not trim malloc).
 */
#include <node_api.h>
#include <v8.h>
#include <malloc.h>

static napi_value js_release_memory(napi_env, napi_callback_info) {
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate) isolate->LowMemoryNotification();
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  return nullptr;
}

extern "C" void cove_memory_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "releaseMemory", nullptr, js_release_memory, nullptr, nullptr, nullptr, napi_default, nullptr },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
