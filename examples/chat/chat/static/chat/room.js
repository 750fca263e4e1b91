// The chat room's client: a WebSocketBridge to /ws/chat/<room>/, JSON both ways.
// Sends {"message": text}; receives {"message", "user", "id"} or {"error": text}. The bridge
// reconnects by itself with the position of the last message seen (starting from the one the
// page was rendered at), so the server resends exactly what was missed; ids already on the page
// are skipped. Presence frames keep the online list.
(() => {
  "use strict";
  const roomName = JSON.parse(document.getElementById("room-name").textContent);
  const positions = JSON.parse(document.getElementById("room-positions").textContent);
  const log = document.getElementById("chat-log");
  const status = document.getElementById("chat-status");
  const online = document.getElementById("online-list");
  const missed = document.getElementById("chat-missed");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-message-input");
  const bridge = new window.channels.WebSocketBridge({ positions });
  window.chatBridge = bridge;

  function shown(id) {
    return log.querySelector(`li[data-id="${id}"]`) !== null;
  }

  function append(data) {
    const item = document.createElement("li");
    if (data.error) {
      item.className = "error";
      item.textContent = data.error;
    } else {
      if (shown(data.id)) {
        return;
      }
      item.dataset.id = data.id;
      const who = document.createElement("strong");
      who.textContent = data.user;
      const what = document.createElement("span");
      what.textContent = data.message;
      item.append(who, ": ", what);
    }
    log.append(item);
    log.scrollTop = log.scrollHeight;
  }

  function showOnline(members) {
    const names = new Set();
    let anonymous = 0;
    Object.values(members).forEach((info) => {
      if (info.user) {
        names.add(info.user);
      } else {
        anonymous += 1;
      }
    });
    const parts = [...names].sort();
    if (anonymous) {
      parts.push(`${anonymous} anonymous`);
    }
    online.textContent = parts.join(", ");
  }

  bridge.addEventListener("open", () => {
    status.textContent = "connected";
    document.body.dataset.socket = "open";
  });
  bridge.addEventListener("close", () => {
    status.textContent = "disconnected, reconnecting…";
    document.body.dataset.socket = "closed";
  });
  bridge.addEventListener("recovery", (recovery) => {
    document.body.dataset.recovered = String(recovery.recovered);
    if (recovery.recovered === false) {
      missed.hidden = false;
    }
  });
  bridge.addEventListener("presence", (presence) => showOnline(presence.members));
  bridge.listen(append);
  bridge.connect(`/ws/chat/${roomName}/`);

  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (text && bridge.socket && bridge.socket.readyState === WebSocket.OPEN) {
        bridge.send({ message: text });
        input.value = "";
      }
      input.focus();
    });
  }
})();
