// k6 beside llmscen in benchmarks/open_loop.py: the same streamed POST, as a closed loop
// (VUS users, back to back) or an open one (RATE arrivals a second, constant-arrival-rate,
// which starts each iteration on its schedule and counts those it had no VU for as
// dropped_iterations). Status checked, body read, not parsed. Writes its summary to SUMMARY.
//   k6 run --quiet -e URL=http://127.0.0.1:PORT -e RATE=3000 -e DURATION=10 \
//          -e SUMMARY=/tmp/k6.json k6_open.js
import http from 'k6/http';
import { Counter } from 'k6/metrics';

const errors = new Counter('chat_errors');
const url = `${__ENV.URL}/v1/chat/completions`;
const duration = `${__ENV.DURATION || 10}s`;
const body = JSON.stringify({
  model: 'bench',
  messages: [{ role: 'user', content: 'Count to sixty-four.' }],
  max_tokens: 64,
  ignore_eos: true,
  stream: true,
  stream_options: { include_usage: true },
});
const params = { headers: { 'Content-Type': 'application/json' } };

export const options = {
  summaryTrendStats: ['p(50)', 'p(99)', 'max'],
  scenarios: {
    load: __ENV.RATE
      ? {
          executor: 'constant-arrival-rate',
          rate: Number(__ENV.RATE),
          timeUnit: '1s',
          duration,
          preAllocatedVUs: 512,   // allocated before the run: none is made mid-run
          maxVUs: 2048,
        }
      : { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration },
  },
};

export default function () {
  const res = http.post(url, body, params);
  if (res.status !== 200) {
    errors.add(1);
  }
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
