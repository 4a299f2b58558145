// The chat page's part of call recording (templates/voice/chat.html): the notice and the user's answer
// before the call, the indicator while it runs, and the recorder (call-recorder.js) for each new call.
//
// Nothing is recorded without the user's answer: the socket carries it (`recording=yes|no`), the
// server keeps it on the session and takes no upload without it, and a configuration that requires
// it starts no call without it.
import { CallRecorder, recordingSupported } from "./call-recorder.js";

const $ = (id) => document.getElementById(id);

export function setupRecording(client, config, pageData) {
  const box = $("recording-consent");
  const notice = $("recording-notice");
  const agree = $("recording-agree");
  const agreeLabel = $("recording-agree-label");
  const indicator = $("recording-state");
  let recorder = null;
  let readyAt = 0;
  let policyOfCall = "off";
  let agreedForCall = false;
  let recordedByServer = false;

  const policy = () => (config && config.selectedOptions[0]?.dataset.recording) || "off";

  function renderConsent() {
    const option = config && config.selectedOptions[0];
    const wanted = policy();
    box.hidden = wanted === "off";
    if (wanted === "off") return;
    const days = Number(option.dataset.retention) || 0;
    const kept = days ? ` It is kept for ${days} day${days === 1 ? "" : "s"}, then deleted.` : "";
    if (!recordingSupported()) {
      notice.textContent = "Calls with this assistant are recorded, but this browser cannot record them.";
    } else if (wanted === "required") {
      notice.textContent = `Calls with this assistant are recorded: your voice and the assistant's, with the transcript, for you to play back.${kept} The call can only start if you agree.`;
    } else {
      notice.textContent = `Calls with this assistant can be recorded: your voice and the assistant's, with the transcript, for you to play back.${kept} Without your agreement the call is not recorded.`;
    }
    agreeLabel.textContent = wanted === "required" ? "I agree to this call being recorded" : "Record this call";
  }

  function showIndicator(text, state) {
    indicator.hidden = !text;
    indicator.textContent = text;
    indicator.dataset.state = state || "";
  }

  // The socket URL carries the answer; a resume keeps the session's (the client drops the query).
  client.options.wsUrl = (slug) => {
    const url = new URL(client.options.wsPath, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    if (slug) url.searchParams.set("config", slug);
    if (policyOfCall !== "off") url.searchParams.set("recording", agreedForCall ? "yes" : "no");
    return url.toString();
  };

  async function stopRecorder() {
    const current = recorder;
    recorder = null;
    if (!current) return;
    const sent = await current.stop();
    if (current.state === "failed") return;
    showIndicator(sent ? "Recording saved" : "Part of the recording could not be sent", sent ? "saved" : "failed");
  }

  client.addEventListener("ready", () => {
    readyAt = performance.now();
    stopRecorder(); // a new session (relay mode reconnect): its own recording
    if (!agreedForCall || !client.sessionId) return;
    if (client.live?.recorded_by === "server") {
      // GPT-Live: the server records the call from its own copy of the audio; this page uploads nothing.
      recordedByServer = true;
      showIndicator("Recording this call", "recording");
      return;
    }
    if (!recordingSupported()) return;
    const sessionId = client.sessionId;
    const current = new CallRecorder({
      chunkUrl: (index) => pageData.recording_chunk_url.replace(pageData.any_session, sessionId).replace(/0$/, String(index)),
      csrfToken: pageData.csrf_token,
      chunkMs: pageData.recording_chunk_ms,
    });
    current.addEventListener("state", (e) => {
      if (e.detail.state === "recording") showIndicator("Recording this call", "recording");
      if (e.detail.state === "failed") showIndicator(e.detail.message, "failed");
    });
    recorder = current;
    window.voiceRecorder = current; // for end-to-end tests and debugging
    try {
      current.start(client.localStream, client.remoteStream, performance.now() - readyAt);
    } catch (err) {
      recorder = null;
      showIndicator("This call could not be recorded in this browser; it goes on unrecorded.", "failed");
    }
  });
  client.addEventListener("closed", () => {
    if (recordedByServer) {
      recordedByServer = false;
      showIndicator("The recording is kept on the server", "saved");
    }
    stopRecorder();
  });

  if (config) config.addEventListener("change", renderConsent);
  renderConsent();

  return {
    /** Before Connect: the user's answer for this call, or false (with a sentence) to start no call. */
    beforeConnect() {
      policyOfCall = policy();
      agreedForCall = policyOfCall !== "off" && agree.checked && recordingSupported();
      showIndicator(policyOfCall === "off" ? "" : agreedForCall ? "Recording starts when the call connects" : "Not recorded", "");
      if (policyOfCall === "required" && !agreedForCall) {
        showIndicator("", "");
        return recordingSupported()
          ? "This assistant records its calls. Tick “I agree to this call being recorded” to start, or choose another assistant."
          : "This assistant records its calls, and this browser cannot record. Use another browser or choose another assistant.";
      }
      return "";
    },
  };
}
