// A real OpenID provider for docqa's tests: panva's certified oidc-provider, configured
// from a JSON file the Python fixture writes (tests/oidc_server.py). People and their
// groups are read from that file at every sign-in, so a test changes someone's groups by
// rewriting it. The login page is a plain form (username and password); consent is given
// at once, as an intranet provider does for its own applications.
//
//   node server.mjs CONFIG.json      prints "listening <port>" once it accepts requests
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const people = () => JSON.parse(readFileSync(config.people_file, 'utf8'));

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: [config.signing_key] },
  cookies: { keys: [config.cookie_key] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  // Claims of the granted scopes go into the ID token as well as to userinfo, as
  // Keycloak and Entra do with groups configured.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, IdToken: 300, AccessToken: 300 },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const person = people()[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: person.username ?? id,
          name: person.name,
          email: person.email,
          groups: person.groups,
        };
      },
    };
  },
});

const page = (body) => `<!doctype html><html><body>${body}</body></html>`;
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const person = people()[form.get('login')];
      if (!person || person.password !== form.get('password')) {
        res.writeHead(401, { 'content-type': 'text/html' });
        res.end(page('<p id="error">wrong username or password</p>'));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: form.get('login') } }, {
        mergeWithLastSubmission: false,
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page(`<form method="post" action="/interaction/${escape(uid)}/login">
      <input name="login" id="login"><input name="password" id="password" type="password">
      <button type="submit" id="submit">Sign in</button></form>`));
    return;
  }
  // consent: granted for everything asked
  const { params, session, grantId, prompt } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const saved = await grant.save();
  await provider.interactionFinished(req, res, { consent: grantId ? {} : { grantId: saved } }, {
    mergeWithLastSubmission: true,
  });
}

const handle = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/(login))?/.exec(req.url);
  if (!match) {
    handle(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((err) => {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(err && err.message ? err.message : err));
  });
});
server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
