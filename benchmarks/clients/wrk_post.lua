-- wrk: POST the chat body (the static server ignores it); no parsing at all.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"Count to sixty-four."}],"max_tokens":64}'
