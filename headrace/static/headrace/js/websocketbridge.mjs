// The ES-module face of websocketbridge.js (the one source): importing it runs the classic
// script, which installs globalThis.channels.WebSocketBridge; this module re-exports it.
import './websocketbridge.js';

export const WebSocketBridge = globalThis.channels.WebSocketBridge;
export default WebSocketBridge;
