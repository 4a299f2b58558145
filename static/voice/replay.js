// The session page's replay (templates/voice/session_detail.html, templates/admin/...): "Play from"
// buttons seek the recording to a line's moment; the level bars show who spoke when (the user on the
// left channel, drawn above; the assistant on the right, drawn below).
const LEVEL_BARS = 200;
const MAX_DECODED_BYTES = 40 * 1024 * 1024; // a longer recording plays, but without bars
const DECODE_RATE = 8000;

const audio = document.getElementById("replay-audio");
const canvas = document.getElementById("replay-levels");

function playFrom(ms) {
  if (!audio) return;
  const seek = () => {
    audio.currentTime = ms / 1000;
    audio.play().catch(() => {});
  };
  // Before the browser has read where the file's audio starts, a seek may be lost: wait for it.
  if (audio.readyState >= 1) seek();
  else audio.addEventListener("loadedmetadata", seek, { once: true });
  if (audio.preload !== "auto") audio.preload = "auto";
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.play-at");
  if (button) playFrom(Number(button.dataset.ms) || 0);
});

async function drawLevels() {
  if (!audio || !canvas || !window.OfflineAudioContext) return;
  let bytes;
  try {
    const response = await fetch(audio.currentSrc || audio.src, { credentials: "same-origin" });
    if (!response.ok || Number(response.headers.get("Content-Length")) > MAX_DECODED_BYTES) return;
    bytes = await response.arrayBuffer();
  } catch (_) {
    return;
  }
  let decoded;
  try {
    // The length is a guess the decoder does not use: decodeAudioData gives the whole file at this rate.
    decoded = await new OfflineAudioContext(2, DECODE_RATE, DECODE_RATE).decodeAudioData(bytes);
  } catch (_) {
    return;
  }
  const channels = [0, Math.min(1, decoded.numberOfChannels - 1)].map((c) => decoded.getChannelData(c));
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const middle = height / 2;
  const bar = width / LEVEL_BARS;
  const per = Math.max(1, Math.floor(channels[0].length / LEVEL_BARS));
  ctx.clearRect(0, 0, width, height);
  const colors = ["#2456c8", "#1d7a46"];
  channels.forEach((data, c) => {
    ctx.fillStyle = colors[c];
    for (let b = 0; b < LEVEL_BARS; b++) {
      let sum = 0;
      for (let i = b * per; i < (b + 1) * per && i < data.length; i++) sum += data[i] * data[i];
      const level = Math.min(1, Math.sqrt(sum / per) * 4);
      const h = Math.max(1, level * (middle - 2));
      ctx.fillRect(b * bar, c === 0 ? middle - h : middle, Math.max(1, bar - 1), h);
    }
  });
  canvas.dataset.drawn = "true";
  canvas.addEventListener("click", (event) => {
    const rect = canvas.getBoundingClientRect();
    playFrom(((event.clientX - rect.left) / rect.width) * decoded.duration * 1000);
  });
}

drawLevels();
