// Talking to the studio server: a few requests at a time (the server runs one job at a time anyway),
// retries when its queue is full (503), and aborts that cancel the server's queued work.

const RETRIES = 6;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class ApiError extends Error {
  constructor(message, param) {
    super(message);
    this.param = param;
  }
}

export class Fetcher {
  constructor(limit = 4) {
    this.limit = limit;
    this.active = 0;
    this.waiting = [];
  }

  // Resolves to a Blob (kind "blob"), parsed JSON ("json") or an ArrayBuffer ("buffer").
  get(url, { signal, kind = "blob", init = {} } = {}) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ url, signal, kind, init, resolve, reject });
      this.pump();
    });
  }

  pump() {
    while (this.active < this.limit && this.waiting.length) {
      const job = this.waiting.shift();
      if (job.signal && job.signal.aborted) {
        job.reject(new DOMException("aborted", "AbortError"));
        continue;
      }
      this.active += 1;
      this.run(job).then(job.resolve, job.reject).finally(() => {
        this.active -= 1;
        this.pump();
      });
    }
  }

  async run({ url, signal, kind, init }) {
    for (let attempt = 0; ; attempt += 1) {
      const response = await fetch(url, { ...init, signal });
      if (response.status === 503 && attempt < RETRIES) {
        await sleep(250 * 2 ** attempt);
        continue;
      }
      if (!response.ok) {
        let body = {};
        try { body = await response.json(); } catch (_) { /* not JSON */ }
        throw new ApiError(body.error || `${response.status} ${response.statusText}`, body.param);
      }
      if (kind === "json") return response.json();
      if (kind === "buffer") return response.arrayBuffer();
      return response.blob();
    }
  }
}

// The identity of the current texture as query parameters (see params.parse_identity on the server).
export function identityQuery(state) {
  const q = new URLSearchParams({ seed: state.seed, truncation: state.truncation });
  if (state.noise !== null) q.set("noise", state.noise);
  if (state.mix) {
    q.set("seed_b", state.seedB);
    q.set("t", state.t);
  }
  return q;
}

export function isAbort(error) {
  return error && error.name === "AbortError";
}
