// Sign in / sign up: #auth-form (data-mode="signin"|"signup").
"use strict";

const authForm = document.getElementById("auth-form");
const mode = authForm.dataset.mode;
const next = safeNext(queryParam("next"), "/account");

// Keep `next` when switching between sign in and sign up.
const alt = document.getElementById("alt-link");
if (alt && queryParam("next")) alt.href = alt.getAttribute("href") + "?next=" + encodeURIComponent(next);

// Already signed in: nothing to do here.
currentAccount()
  .then((a) => {
    if (a) location.replace(next);
  })
  .catch(() => {});

Forms.bind(
  authForm,
  async () => {
    const body = { email: authForm.elements.email.value.trim(), password: authForm.elements.password.value };
    let out;
    try {
      out = await api("POST", mode === "signup" ? "/api/v1/accounts" : "/api/v1/sessions", body, { noCsrf: true });
    } catch (e) {
      // Point at the input even when the server names no field.
      const field = { bad_email: "email", email_taken: "email", weak_password: "password" }[e.code];
      if (field && !(e.fields && e.fields.length)) e.fields = [{ field, message: e.message }];
      throw e;
    }
    if (out && out.csrfToken) setCsrfToken(out.csrfToken);
    location.assign(next);
    await new Promise(() => {}); // keep the button disabled while the browser navigates
  },
  { redirectOn401: false },
);
