// Records both sides of a call in the browser (which holds the media in both call modes) and uploads
// the recording a chunk at a time while the call runs: one stereo Opus/WebM stream, the microphone on
// the left and the model on the right, from one MediaRecorder (its chunks, put end to end, are one
// valid WebM file). Uploads go one at a time, in order; a chunk whose answer is lost is sent again
// (the server stores it once), so a network drop or a reconnect leaves no hole.
//
// Events: "state" {state: "recording"|"stopped"|"failed", message}, "uploaded" {index, next}.

const MIME_TYPE = "audio/webm;codecs=opus";
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 8000;
const FLUSH_TIMEOUT_MS = 15000;

export function recordingSupported() {
  return typeof window.MediaRecorder === "function" && MediaRecorder.isTypeSupported(MIME_TYPE)
    && typeof (window.AudioContext || window.webkitAudioContext) === "function";
}

export class CallRecorder extends EventTarget {
  /**
   * @param {object} options
   * @param {(index: number) => string} options.chunkUrl  where chunk `index` is POSTed
   * @param {string} options.csrfToken
   * @param {number} [options.chunkMs=1000]
   */
  constructor(options) {
    super();
    this.options = { chunkMs: 1000, ...options };
    this.state = "idle";
    this.queue = [];      // {index, blob, durationMs} waiting for the server
    this.nextIndex = 0;   // the next chunk MediaRecorder gives
    this.uploaded = 0;    // chunks the server holds
    this._uploading = false;
    this._stopped = null; // resolves once MediaRecorder gave its last chunk
    this._idle = [];      // resolvers waiting for the queue to empty
  }

  /** Start recording `local` (microphone) and `remote` (model) streams; `offsetMs` is where the
   *  recording starts on the session's clock (ms after the call connected). */
  start(local, remote, offsetMs = 0) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();
    this.ctx = ctx;
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    const merger = ctx.createChannelMerger(2); // each input is mixed down to one channel
    this._sources = [];
    for (const [stream, channel] of [[local, 0], [remote, 1]]) {
      if (!stream || !stream.getAudioTracks().length) continue;
      const source = ctx.createMediaStreamSource(stream);
      source.connect(merger, 0, channel);
      this._sources.push(source);
    }
    const destination = ctx.createMediaStreamDestination();
    destination.channelCount = 2;
    merger.connect(destination);
    this.offsetMs = Math.round(offsetMs);
    this.startedAt = performance.now();
    const recorder = new MediaRecorder(destination.stream, { mimeType: MIME_TYPE, audioBitsPerSecond: 64000 });
    this.recorder = recorder;
    this._stopped = new Promise((resolve) => recorder.addEventListener("stop", resolve, { once: true }));
    recorder.addEventListener("dataavailable", (ev) => {
      if (!ev.data || !ev.data.size) return;
      this.queue.push({ index: this.nextIndex++, blob: ev.data, durationMs: Math.round(performance.now() - this.startedAt) });
      this._pump();
    });
    recorder.addEventListener("error", (ev) => this._fail("The call could not be recorded in this browser.", String(ev.error || "")));
    recorder.start(this.options.chunkMs);
    this._setState("recording");
  }

  /** Stop recording and send what is left (within a deadline); resolves when the server holds it all. */
  async stop() {
    if (this.recorder && this.recorder.state !== "inactive") {
      try { this.recorder.stop(); } catch (_) { /* already stopped */ }
      await this._stopped;
    }
    this._closeAudio();
    if (this.state === "recording") this._setState("stopped");
    if (!this.queue.length) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), FLUSH_TIMEOUT_MS);
      this._idle.push(() => { clearTimeout(timer); resolve(true); });
    });
  }

  snapshot() {
    return { state: this.state, recorded: this.nextIndex, uploaded: this.uploaded, queued: this.queue.length };
  }

  async _pump() {
    if (this._uploading) return;
    this._uploading = true;
    let attempt = 0;
    try {
      while (this.queue.length && this.state !== "failed") {
        const chunk = this.queue[0];
        let answer;
        try {
          answer = await this._send(chunk);
        } catch (_) {
          // The network, not the server: wait and send the same chunk again.
          await sleep(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt++));
          continue;
        }
        const body = await answer.json().catch(() => ({}));
        if (answer.ok) {
          attempt = 0;
          this.queue.shift();
          this.uploaded = body.next ?? chunk.index + 1;
          this._emit("uploaded", { index: chunk.index, next: this.uploaded });
          continue;
        }
        if (answer.status === 409 && body.error === "out_of_order" && typeof body.next === "number" && body.next > chunk.index) {
          this.queue = this.queue.filter((c) => c.index >= body.next); // the server had these already
          continue;
        }
        if (answer.status === 429 || answer.status >= 500) {
          const wait = Number(answer.headers.get("Retry-After")) * 1000 || RETRY_BASE_MS * 2 ** attempt++;
          await sleep(Math.min(RETRY_MAX_MS, wait));
          continue;
        }
        this._fail(body.message || "The recording could not be stored; the call goes on unrecorded.", `HTTP ${answer.status}`);
      }
    } finally {
      this._uploading = false;
      if (!this.queue.length || this.state === "failed") {
        const idle = this._idle;
        this._idle = [];
        idle.forEach((resolve) => resolve());
      }
    }
  }

  _send(chunk) {
    const headers = {
      "Content-Type": MIME_TYPE,
      "X-CSRFToken": this.options.csrfToken,
      "X-Recording-Duration-Ms": String(chunk.durationMs),
    };
    if (chunk.index === 0) headers["X-Recording-Offset-Ms"] = String(this.offsetMs);
    return fetch(this.options.chunkUrl(chunk.index), {
      method: "POST", body: chunk.blob, headers, credentials: "same-origin", cache: "no-store",
    });
  }

  _fail(message, detail) {
    if (this.state === "failed") return;
    if (this.recorder && this.recorder.state !== "inactive") {
      try { this.recorder.stop(); } catch (_) { /* stopped */ }
    }
    this._closeAudio();
    this.queue = [];
    this._setState("failed", message, detail);
  }

  _closeAudio() {
    for (const source of this._sources || []) { try { source.disconnect(); } catch (_) { /* gone */ } }
    this._sources = [];
    if (this.ctx && this.ctx.state !== "closed") this.ctx.close().catch(() => {});
  }

  _setState(state, message = "", detail = "") {
    this.state = state;
    this._emit("state", { state, message, detail });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
