#ifndef VSNAP_SOCKET_BUFFERS_H
#define VSNAP_SOCKET_BUFFERS_H
#include <node_api.h>
napi_value set_socket_buffers(napi_env env, napi_callback_info info);
napi_value get_socket_buffers(napi_env env, napi_callback_info info);
#endif
