// The chat page: chat history in the sidebar, collection picker, settings, and asking
// with a streamed answer (sources first, then tokens, then the cited text).

import { _, ngettext } from "../i18n.js";
import { api, askStream, errorFrom, errorText } from "./api.js";
import { chatMarkdown, download, fileName } from "./export.js";
import { AssistantMessage, userMessage } from "./messages.js";
import { initSettings, showPreferences } from "./settings.js";
import { readEvents } from "./sse.js";

const $ = (id) => document.getElementById(id);

const state = {
  chatId: null, // the chat being shown; null = a new one, created on the first question
  controller: null, // AbortController of the answer in flight
  lastChatKey: null, // localStorage key remembering this user's open chat across reloads
};

// -- collection picker --------------------------------------------------------------------

function pickedCollections() {
  return [...document.querySelectorAll('#collection-picker input[name="collection"]:checked')]
    .map((input) => Number(input.value));
}

function setPicked(ids) {
  const wanted = new Set((ids || []).map(String));
  for (const input of document.querySelectorAll('#collection-picker input[name="collection"]')) {
    input.checked = wanted.has(input.value);
  }
}

/** Rebuild the picker from /api/v1/me (only collections the user may read), keeping ticks. */
function renderPicker(collections) {
  const picked = new Set(pickedCollections().map(String));
  const box = $("picker-items");
  if (!collections.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.id = "no-collections";
    p.textContent = _("You may not read any collection yet; ask an administrator.");
    box.replaceChildren(p);
    return;
  }
  box.replaceChildren(...collections.map((c) => {
    const label = document.createElement("label");
    label.className = "picker-item";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = "collection";
    input.value = String(c.id);
    input.checked = picked.has(input.value);
    const name = document.createElement("span");
    name.className = "picker-name";
    name.textContent = c.name;
    name.translate = false;
    label.title = ngettext("%(n)s document", "%(n)s documents", c.documents);
    label.append(input, " ", name);
    return label;
  }));
}

async function rememberPicked() {
  // The chat keeps its collections, so reopening it restores the picker.
  if (!state.chatId) return;
  try {
    await api("PATCH", `/api/v1/chats/${encodeURIComponent(state.chatId)}`, {
      collection_ids: pickedCollections(),
    });
  } catch (err) {
    console.warn("could not store the chat's collections", err);
  }
}

// -- chat list ----------------------------------------------------------------------------

function chatItem(chat) {
  const li = document.createElement("li");
  li.dataset.chatId = chat.id;
  li.classList.toggle("active", chat.id === state.chatId);
  const title = document.createElement("span");
  title.className = "chat-title";
  title.textContent = chat.title;
  title.translate = false;
  title.title = chat.title;
  title.tabIndex = 0;
  const rename = document.createElement("button");
  rename.type = "button";
  rename.className = "rename";
  rename.title = _("Rename");
  rename.textContent = "✎";
  rename.setAttribute("aria-label", _("Rename %(title)s", { title: chat.title }));
  const del = document.createElement("button");
  del.type = "button";
  del.className = "delete";
  del.title = _("Delete");
  del.textContent = "×";
  del.setAttribute("aria-label", _("Delete %(title)s", { title: chat.title }));
  li.append(title, rename, del);
  return li;
}

async function loadChats() {
  const search = $("chat-search").value.trim();
  const url = search ? `/api/v1/chats?q=${encodeURIComponent(search)}` : "/api/v1/chats";
  const { chats } = await api("GET", url);
  $("chat-list").replaceChildren(...chats.map(chatItem));
  $("chat-list-empty").hidden = chats.length > 0;
  $("chat-list-empty").textContent = search ? _("No chat matches.") : _("No chats yet.");
  return chats;
}

let searchTimer = null;
function onSearchInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => loadChats().then(markActive).catch((e) => showBanner(e.message)), 250);
}

function rememberOpenChat() {
  if (!state.lastChatKey) return;
  try {
    if (state.chatId) localStorage.setItem(state.lastChatKey, state.chatId);
    else localStorage.removeItem(state.lastChatKey);
  } catch {
    // storage disabled (private mode): a reload opens a new chat, as before
  }
}

function storedChatId() {
  try {
    return state.lastChatKey ? localStorage.getItem(state.lastChatKey) : null;
  } catch {
    return null;
  }
}

function markActive() {
  for (const li of $("chat-list").querySelectorAll("li[data-chat-id]")) {
    li.classList.toggle("active", li.dataset.chatId === state.chatId);
  }
}

async function openChat(chatId) {
  if (state.controller) return; // finish or stop the running answer first
  const { chat, messages } = await api("GET", `/api/v1/chats/${encodeURIComponent(chatId)}`);
  state.chatId = chat.id;
  setPicked(chat.collection_ids);
  const box = $("messages");
  box.replaceChildren();
  let lastView = null;
  let lastQuestion = null;
  let lastMessage = null;
  for (const message of messages) {
    if (message.role === "user") {
      lastQuestion = message.content;
      box.append(userMessage(message.content, editQuestion));
    } else {
      lastView = AssistantMessage.fromStored(message);
      lastMessage = message;
      lastView.showActions({ feedback: feedbackFor(chat.id, message) });
      box.append(lastView.element);
    }
  }
  if (lastView && lastQuestion) {
    const question = lastQuestion;
    lastView.showActions({
      onRegenerate: () => askQuestion(question),
      feedback: feedbackFor(chat.id, lastMessage),
    });
  }
  state.messages = messages;
  markActive();
  rememberOpenChat();
  box.scrollTop = box.scrollHeight;
  closeDrawer();
}

/** What an answer's vote buttons need: its stored id and the vote already given. */
function feedbackFor(chatId, message) {
  return {
    current: message.feedback || null,
    send: async (rating, comment) => {
      const url = `/api/v1/chats/${encodeURIComponent(chatId)}/messages/${message.id}/feedback`;
      const { feedback } = await api("PUT", url, { rating, comment: comment || null });
      return feedback;
    },
  };
}

/** Edit and resend: the question goes back into the composer, to change and send. */
function editQuestion(text) {
  const input = $("question");
  input.value = text;
  input.focus();
  input.setSelectionRange(text.length, text.length);
}

/** The open chat as a Markdown file (questions, answers, sources as footnotes). */
async function exportChat() {
  if (!state.chatId) return;
  const { chat, messages } = await api("GET", `/api/v1/chats/${encodeURIComponent(state.chatId)}`);
  download(fileName(chat.title, "md"), chatMarkdown(chat.title, messages));
}

function newChat() {
  if (state.controller) return;
  state.chatId = null;
  $("messages").replaceChildren();
  markActive();
  rememberOpenChat();
  closeDrawer();
  $("question").focus();
}

/** Rename in place: the title becomes editable; Enter saves, Escape cancels. */
function startRename(li) {
  const title = li.querySelector(".chat-title");
  const before = title.textContent;
  try {
    title.contentEditable = "plaintext-only"; // no pasted markup in a title
  } catch {
    title.contentEditable = "true"; // browsers without plaintext-only
  }
  title.focus();
  document.getSelection().selectAllChildren(title);
  let finished = false;
  const finish = async (save) => {
    if (finished) return;
    finished = true;
    title.contentEditable = "false";
    const text = title.textContent.replace(/\s+/g, " ").trim();
    if (!save || !text || text === before) {
      title.textContent = before;
      return;
    }
    try {
      const { chat } = await api("PATCH", `/api/v1/chats/${encodeURIComponent(li.dataset.chatId)}`,
        { title: text });
      title.textContent = chat.title;
    } catch (err) {
      title.textContent = before;
      showBanner(err.message);
    }
  };
  title.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); finish(true); }
    if (e.key === "Escape") { e.preventDefault(); finish(false); }
  });
  title.addEventListener("blur", () => finish(true), { once: true });
}

async function deleteChat(li) {
  const chatId = li.dataset.chatId;
  if (state.controller && chatId === state.chatId) return;
  await api("DELETE", `/api/v1/chats/${encodeURIComponent(chatId)}`);
  li.remove();
  $("chat-list-empty").hidden = $("chat-list").children.length > 0;
  if (chatId === state.chatId) newChat();
}

function onChatListClick(event) {
  const li = event.target.closest("li[data-chat-id]");
  if (!li) return;
  const run = (promise) => promise.catch((err) => showBanner(err.message));
  if (event.target.closest("button.rename")) startRename(li);
  else if (event.target.closest("button.delete")) run(deleteChat(li));
  else if (li.querySelector(".chat-title").isContentEditable) return;
  else run(openChat(li.dataset.chatId));
}

// -- the sidebar as a drawer (phones; CSS makes it one below 760 px) ---------------------

function setDrawer(open) {
  document.querySelector("main.portal").classList.toggle("drawer-open", open);
  $("sidebar-toggle").setAttribute("aria-expanded", String(open));
  $("drawer-backdrop").hidden = !open;
}

function closeDrawer() {
  setDrawer(false);
}

// -- asking -------------------------------------------------------------------------------

function showBanner(message) {
  const box = $("messages");
  const note = document.createElement("div");
  note.className = "banner error";
  note.setAttribute("role", "alert");
  note.textContent = message;
  box.append(note);
  box.scrollTop = box.scrollHeight;
}

function setBusy(busy) {
  $("ask").disabled = busy;
  $("stop").hidden = !busy;
}

/** Create the chat for a first question; true when one was created. */
async function ensureChat() {
  if (state.chatId) return false;
  const { chat } = await api("POST", "/api/v1/chats", { collection_ids: pickedCollections() });
  state.chatId = chat.id;
  return true;
}

/** A chat created for a question the server refused stays out of the history. */
async function dropEmptyChat() {
  const chatId = state.chatId;
  state.chatId = null;
  try {
    await api("DELETE", `/api/v1/chats/${encodeURIComponent(chatId)}`);
  } catch {
    // it stays in the list as an empty "New chat"; harmless
  }
}

function handleEvent(view, event) {
  switch (event.type) {
    case "sources": view.showSources(event.sources, event.dropped); break;
    case "queued": view.showQueued(event.position); break;
    case "token": view.addToken(event.text); break;
    case "citations": view.showCitations(event); break;
    case "done": view.finish(event); break;
    case "error": view.fail(errorText(event.code, event.message || _("the answer failed"))); break;
    default: break; // newer servers may send more; ignore what we do not know
  }
}

/** Show the answer stream; false when the server refused the question up front. */
async function streamAnswer(view, body, signal) {
  const resp = await askStream(body, signal);
  if (!resp.ok) {
    const err = await errorFrom(resp);
    view.fail(err.message);
    return false;
  }
  for await (const event of readEvents(resp.body)) {
    handleEvent(view, event);
    $("messages").scrollTop = $("messages").scrollHeight;
  }
  if (view.state === "waiting" || view.state === "streaming") {
    view.fail(_("The connection ended before the answer was complete."));
  }
  return true;
}

async function ask(event) {
  if (event) event.preventDefault();
  await askQuestion($("question").value.trim());
}

/** Ask ``question`` in the open chat (a new one for the first question). */
async function askQuestion(question) {
  const input = $("question");
  if (!question || state.controller) return;
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  $("welcome")?.remove();
  const box = $("messages");
  const view = new AssistantMessage();
  try {
    const created = await ensureChat();
    rememberOpenChat();
    for (const old of box.querySelectorAll(".answer-actions .regenerate")) old.remove();
    box.append(userMessage(question, editQuestion), view.element);
    box.scrollTop = box.scrollHeight;
    input.value = "";
    const body = { question, chat_id: state.chatId };
    const picked = pickedCollections();
    if (picked.length) body.collection_ids = picked;
    const started = await streamAnswer(view, body, controller.signal);
    if (!started) {
      input.value = question; // nothing was asked: let the user retry as is
      if (created) await dropEmptyChat();
      rememberOpenChat();
    } else {
      // The done event names the stored answer: its votes go to that message.
      const stored = view.messageId ? { id: view.messageId } : null;
      view.showActions({
        onRegenerate: () => askQuestion(question),
        feedback: stored && view.state !== "error" ? feedbackFor(state.chatId, stored) : undefined,
      });
    }
  } catch (err) {
    if (controller.signal.aborted) view.stop();
    else if (view.element.isConnected) view.fail(err.message || String(err));
    else showBanner(err.message || String(err));
  } finally {
    state.controller = null;
    setBusy(false);
    loadChats().then(markActive).catch(() => {}); // the first question titles the chat
  }
}

function stop() {
  // Aborting the fetch closes the connection; the server notices and frees the model.
  if (state.controller) state.controller.abort();
}

function printChat() {
  // The print stylesheet leaves only the conversation: the browser's "Save as PDF".
  window.print();
}

function onQuestionKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) ask(event);
}

// -- start --------------------------------------------------------------------------------

async function start() {
  initSettings();
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", onQuestionKey);
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);
  $("chat-list").addEventListener("click", onChatListClick);
  $("collection-picker").addEventListener("change", rememberPicked);
  $("chat-search").addEventListener("input", onSearchInput);
  $("export-chat").addEventListener("click", () => exportChat().catch((e) => showBanner(e.message)));
  $("print-chat").addEventListener("click", printChat);
  $("sidebar-toggle").addEventListener("click", () => {
    setDrawer(!document.querySelector("main.portal").classList.contains("drawer-open"));
  });
  $("drawer-backdrop").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    closeDrawer();
    stop(); // Esc stops the answer being written, like the Stop button
  });
  try {
    const me = await api("GET", "/api/v1/me");
    renderPicker(me.collections);
    showPreferences(me);
    state.lastChatKey = `docqa.openChat.${me.user.id}`;
    const chats = await loadChats();
    // Reopen the chat that was open before the reload, if it still exists.
    const last = storedChatId();
    if (last && chats.some((c) => c.id === last)) await openChat(last);
  } catch (err) {
    showBanner(_("Could not load your settings: %(reason)s", { reason: err.message }));
  }
  document.body.dataset.ready = "1";
}

start();
