// k6 baseline: closed loop of POST /v1/chat/completions, status checked, body read
// but not parsed (k6 has no SSE parser; in sse mode the whole event stream is the body).
//   k6 run --quiet --vus 64 --duration 13s -e URL=http://127.0.0.1:PORT -e MODE=sse k6_chat.js
import http from 'k6/http';
import { Counter } from 'k6/metrics';

const errors = new Counter('chat_errors');
const mode = __ENV.MODE || 'json';
const url = `${__ENV.URL}/v1/chat/completions`;
const body = JSON.stringify({
  model: 'bench',
  messages: [{ role: 'user', content: 'Count to sixty-four.' }],
  max_tokens: 64,
  ignore_eos: true,
  stream: mode === 'sse',
  ...(mode === 'sse' ? { stream_options: { include_usage: true } } : {}),
});
const params = { headers: { 'Content-Type': 'application/json' } };

export default function () {
  const res = http.post(url, body, params);
  if (res.status !== 200) {
    errors.add(1);
  }
}
