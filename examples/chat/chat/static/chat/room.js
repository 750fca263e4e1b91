// The chat room's client: one WebSocket to /ws/chat/<room>/, JSON both ways.
// Sends {"message": text}; receives {"message": text, "user": name} or {"error": text}.
(() => {
  "use strict";
  const roomName = JSON.parse(document.getElementById("room-name").textContent);
  const log = document.getElementById("chat-log");
  const status = document.getElementById("chat-status");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-message-input");
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + window.location.host + "/ws/chat/" + roomName + "/");
  window.chatSocket = socket;

  function append(user, text, isError) {
    const item = document.createElement("li");
    if (isError) {
      item.className = "error";
      item.textContent = text;
    } else {
      const who = document.createElement("strong");
      who.textContent = user;
      const what = document.createElement("span");
      what.textContent = text;
      item.append(who, ": ", what);
    }
    log.append(item);
    log.scrollTop = log.scrollHeight;
  }

  socket.addEventListener("open", () => {
    status.textContent = "connected";
    document.body.dataset.socket = "open";
  });
  socket.addEventListener("close", () => {
    status.textContent = "disconnected";
    document.body.dataset.socket = "closed";
  });
  socket.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if (data.error) {
      append(null, data.error, true);
    } else {
      append(data.user, data.message, false);
    }
  });

  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (text && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ message: text }));
        input.value = "";
      }
      input.focus();
    });
  }
})();
