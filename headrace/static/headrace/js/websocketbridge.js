/*
 * headrace WebSocketBridge: a reconnecting, multiplexing JSON WebSocket client.
 *
 * One source, two ways to load it:
 *   <script src="{% static 'headrace/js/websocketbridge.js' %}"></script>  -> window.channels.WebSocketBridge
 *   import { WebSocketBridge } from ".../headrace/js/websocketbridge.mjs"; (the module re-exports this file)
 *
 * Theory of operation. A bridge owns at most one WebSocket at a time (bridge.socket). connect() resolves the
 * URL with the Channels 1.x rules (none: ws(s)://<page host>/; a leading "/": relative to the page host; wss on
 * https pages) and opens it. Every frame is parsed as JSON: a frame with a "stream" that has a demultiplex()
 * handler calls handler(payload, stream); any other frame calls the listen() callback as cb(message, null).
 * When the socket closes without close() having been called, the bridge reopens it after a delay that grows
 * exponentially from minDelay by factor up to maxDelay, each delay shortened by a random part of up to
 * jitter (so a restarted server is not hit by every client at once); the attempt count resets once a socket
 * opens. send() while the socket is not open queues the frame (at most maxQueue; beyond that it throws, it
 * never drops silently); the queue is sent in order as soon as a socket opens, before the "open" event.
 * Events (addEventListener/removeEventListener): "open", "close" (the CloseEvent), "reconnecting"
 * ({attempt, delay}), "reconnect" (a socket opened again after a loss), "error", "message" (every parsed frame),
 * "recovery" and "presence" (below).
 *
 * Recovery and presence (a server consumer built on headrace.generic.recovery). A frame carrying
 * "__position__": [epoch, offset] is a group message; the bridge keeps the newest position per group in
 * bridge.positions ({group: [epoch, offset]}; options.positions seeds it, e.g. from the page that rendered the
 * state) and opens every socket with "?positions=<URL-encoded JSON of it>" ("{}" at first: a Channels-1
 * interface server then holds group messages until the worker has sent the missed ones), so the server
 * resends exactly what was missed. A {"__recovery__": {group, epoch, offset, recovered}} frame ends each join: it fixes the group's
 * position and is emitted as "recovery" (recovered false: the server no longer has what was missed, reload
 * the state). {"__presence__": {group, event, ...}} frames ("members", then "join"/"leave") keep
 * bridge.presence[group] = {channel: info} and are emitted as "presence" ({group, event, channel, info,
 * members}). Neither control frame reaches listen() or a stream handler.
 * No dependencies; plain ES2017, valid both as a classic script and as a module.
 */
(function (root) {
  'use strict';

  var DEFAULTS = {
    minDelay: 250, // ms before the first reconnection attempt
    maxDelay: 10000, // cap of the exponential backoff, ms
    factor: 2, // growth of the delay per failed attempt
    jitter: 0.5, // up to this fraction of each delay is removed at random
    maxQueue: 1000, // frames kept while disconnected
    reconnect: true, // false: a lost socket stays closed
    positions: null, // {group: [epoch, offset]} to resume from on the first connect
  };
  var EVENTS = ['open', 'close', 'reconnecting', 'reconnect', 'error', 'message', 'recovery', 'presence'];
  var POSITION = '__position__';
  var RECOVERY = '__recovery__';
  var PRESENCE = '__presence__';

  function resolveUrl(url, location) {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    if (!url) {
      return scheme + location.host + '/';
    }
    if (url.charAt(0) === '/') {
      return scheme + location.host + url;
    }
    return url;
  }

  function withPositions(url, positions) {
    var hash = url.indexOf('#');
    var base = hash >= 0 ? url.slice(0, hash) : url;
    var query = 'positions=' + encodeURIComponent(JSON.stringify(positions));
    return base + (base.indexOf('?') >= 0 ? '&' : '?') + query + (hash >= 0 ? url.slice(hash) : '');
  }

  function backoff(options, attempt) {
    var delay = Math.min(options.maxDelay, options.minDelay * Math.pow(options.factor, attempt));
    return Math.round(delay * (1 - options.jitter * Math.random()));
  }

  class WebSocketBridge {
    constructor(options) {
      this.options = Object.assign({}, DEFAULTS, options || {});
      this.socket = null;
      this.streams = {};
      this.defaultHandler = null;
      this.queue = [];
      this.url = null;
      this.protocols = undefined;
      this.positions = Object.assign({}, this.options.positions || {});
      this.presence = {};
      this._epochs = {}; // epoch -> group
      this._listeners = {};
      EVENTS.forEach(function (name) { this._listeners[name] = []; }, this);
      this._attempt = 0;
      this._opened = false;
      this._stopped = false;
      this._timer = null;
    }

    connect(url, protocols, options) {
      Object.assign(this.options, options || {});
      this.url = resolveUrl(url, root.location);
      this.protocols = protocols;
      this._stopped = false;
      this._open();
      return this;
    }

    listen(callback) {
      this.defaultHandler = callback || null;
      return this;
    }

    demultiplex(stream, callback) {
      this.streams[stream] = callback;
      return this;
    }

    send(message) {
      var text = JSON.stringify(message);
      if (this.socket && this.socket.readyState === 1) {
        this.socket.send(text);
        return;
      }
      if (this.queue.length >= this.options.maxQueue) {
        throw new Error('WebSocketBridge: ' + this.queue.length + ' frames already queued while disconnected');
      }
      this.queue.push(text);
    }

    stream(name) {
      var bridge = this;
      return { send: function (payload) { bridge.send({ stream: name, payload: payload }); } };
    }

    close(code, reason) {
      this._stopped = true;
      clearTimeout(this._timer);
      if (this.socket) {
        this.socket.close(code || 1000, reason);
      }
    }

    addEventListener(name, callback) {
      this._known(name).push(callback);
    }

    removeEventListener(name, callback) {
      var list = this._known(name);
      var index = list.indexOf(callback);
      if (index >= 0) {
        list.splice(index, 1);
      }
    }

    _known(name) {
      if (!this._listeners[name]) {
        throw new Error('WebSocketBridge: unknown event "' + name + '" (one of ' + EVENTS.join(', ') + ')');
      }
      return this._listeners[name];
    }

    _emit(name, detail) {
      this._listeners[name].slice().forEach(function (callback) { callback(detail); });
    }

    _open() {
      var url = withPositions(this.url, this.positions);
      var socket = this.protocols ? new root.WebSocket(url, this.protocols) : new root.WebSocket(url);
      this.socket = socket;
      socket.onopen = this._onOpen.bind(this, socket);
      socket.onmessage = this._onMessage.bind(this);
      socket.onerror = this._emit.bind(this, 'error');
      socket.onclose = this._onClose.bind(this, socket);
    }

    _onOpen(socket, event) {
      var reopened = this._opened;
      this._opened = true;
      this._attempt = 0;
      while (this.queue.length && socket.readyState === 1) {
        socket.send(this.queue.shift());
      }
      this._emit('open', event);
      if (reopened) {
        this._emit('reconnect', event);
      }
    }

    _onMessage(event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        this._emit('error', error);
        return;
      }
      this._emit('message', message);
      if (message && typeof message === 'object' && this._control(message)) {
        return;
      }
      var handler = message && typeof message === 'object' ? this.streams[message.stream] : undefined;
      if (handler && Object.prototype.hasOwnProperty.call(this.streams, message.stream)) {
        handler(message.payload, message.stream);
      } else if (this.defaultHandler) {
        this.defaultHandler(message, null);
      }
    }

    _control(message) {
      if (message[RECOVERY]) {
        var recovery = message[RECOVERY];
        this._epochs[recovery.epoch] = recovery.group;
        this.positions[recovery.group] = [recovery.epoch, recovery.offset];
        this._emit('recovery', recovery);
        return true;
      }
      if (message[PRESENCE]) {
        this._presence(message[PRESENCE]);
        return true;
      }
      var position = message[POSITION];
      if (Array.isArray(position)) {
        this._advance(position[0], position[1]);
      }
      return false;
    }

    _advance(epoch, offset) {
      var group = this._epochs[epoch];
      if (group === undefined) {
        // A replayed frame comes before its join's recovery frame: its epoch is the one we asked from.
        group = Object.keys(this.positions).find(function (name) { return this.positions[name][0] === epoch; }, this);
      }
      if (group !== undefined) {
        var known = this.positions[group];
        if (!known || known[0] !== epoch || known[1] < offset) {
          this.positions[group] = [epoch, offset];
        }
      }
    }

    _presence(event) {
      var group = event.group;
      var members = event.event === 'members' ? Object.assign({}, event.members) : this.presence[group] || {};
      if (event.event === 'join') {
        members[event.channel] = event.info;
      } else if (event.event === 'leave') {
        delete members[event.channel];
      }
      this.presence[group] = members;
      this._emit('presence', {
        group: group, event: event.event, channel: event.channel, info: event.info, members: members,
      });
    }

    _onClose(socket, event) {
      if (socket !== this.socket) {
        return;
      }
      this._emit('close', event);
      if (this._stopped || !this.options.reconnect) {
        return;
      }
      var delay = backoff(this.options, this._attempt);
      this._attempt += 1;
      this._emit('reconnecting', { attempt: this._attempt, delay: delay });
      this._timer = setTimeout(this._open.bind(this), delay);
    }
  }

  WebSocketBridge.resolveUrl = resolveUrl;
  WebSocketBridge.backoff = backoff;
  WebSocketBridge.withPositions = withPositions;
  WebSocketBridge.DEFAULTS = DEFAULTS;

  root.channels = root.channels || {};
  root.channels.WebSocketBridge = WebSocketBridge;
})(globalThis);
