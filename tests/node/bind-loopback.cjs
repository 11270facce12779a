// Preload that forces every TCP listen() in the process onto 127.0.0.1.
//
//   node --require ./bind-loopback.cjs node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp
//   NODE_OPTIONS="--require /abs/path/tests/node/bind-loopback.cjs" npx mcp-server-everything sse
//
// Third-party servers (e.g. server-everything's sse / streamableHttp modes) call
// app.listen(PORT) and so bind all interfaces; tests must only ever listen on loopback.
// Unix-socket, fd and handle listens are left alone. Once a TCP server listens, one line
//   bind-loopback: listening on 127.0.0.1:PORT
// is written to stderr (handy with PORT=0, where the server's own banner says "port 0").
'use strict';

const net = require('node:net');

const HOST = '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function isPortLike(value) {
  return (
    value === undefined ||
    value === null ||
    typeof value === 'number' ||
    (typeof value === 'string' && /^\d+$/.test(value))
  );
}

net.Server.prototype.listen = function listen(...args) {
  const callback = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
  const first = args[0];
  let patched = null;

  if (isPortLike(first)) {
    // listen([port[, host[, backlog]]][, callback]) - the host argument is overridden.
    patched = { port: first == null ? 0 : Number(first), host: HOST };
    const backlog = typeof args[1] === 'number' ? args[1] : args[2];
    if (typeof backlog === 'number') patched.backlog = backlog;
  } else if (
    typeof first === 'object' &&
    first !== null &&
    first.path === undefined &&
    first.fd === undefined &&
    first.handle === undefined &&
    first._handle === undefined
  ) {
    // listen(options[, callback]) with a TCP port.
    patched = { ...first, host: HOST };
    delete patched.ipv6Only;
  }

  if (patched) {
    this.once('listening', () => {
      const address = this.address();
      if (address && typeof address === 'object') {
        process.stderr.write(`bind-loopback: listening on ${address.address}:${address.port}\n`);
      }
    });
    return callback ? originalListen.call(this, patched, callback) : originalListen.call(this, patched);
  }
  if (callback) args.push(callback);
  return originalListen.apply(this, args);
};
