"use strict";
// Card entry in Stripe's own fields: the number goes to Stripe, we get back a pm_ id only.
(function () {
  const form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") return;
  const stripe = Stripe(form.dataset.stripeKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  const errors = document.getElementById("card-errors");
  const button = document.getElementById("card-save");
  form.addEventListener("submit", async (event) => {
    if (form.elements.payment_method.value) return;
    event.preventDefault();
    button.disabled = true;
    errors.hidden = true;
    const result = await stripe.confirmCardSetup(form.dataset.clientSecret, {
      payment_method: { card: card, billing_details: { name: form.dataset.name } },
    });
    if (result.error) {
      // The page says it in the visitor's language (data-msg-*); English if it does not.
      errors.textContent = result.error.message || form.dataset.msgFailed || "That card could not be saved.";
      errors.hidden = false;
      button.disabled = false;
      return;
    }
    form.elements.payment_method.value = result.setupIntent.payment_method;
    form.submit();
  });
})();

// Bank accounts (ACH) through Stripe's own flow, where this Stripe.js offers it.
(function () {
  const form = document.getElementById("bank-form");
  if (!form || typeof Stripe === "undefined") return;
  const stripe = Stripe(form.dataset.stripeKey);
  if (typeof stripe.collectBankAccountForSetup !== "function") return;
  form.hidden = false;
  const errors = document.getElementById("bank-errors");
  const button = document.getElementById("bank-save");
  const failed = form.dataset.msgFailed || "That account could not be added. Please try again or use a card.";
  function show(message) {
    errors.textContent = message;
    errors.hidden = false;
    button.disabled = false;
  }
  form.addEventListener("submit", async (event) => {
    if (form.elements.payment_method.value) return;
    event.preventDefault();
    // One bank window at a time: a second tap would start a second SetupIntent flow.
    button.disabled = true;
    errors.hidden = true;
    const secret = form.dataset.clientSecret;
    // Stripe refuses an empty email, and an account may have none on file.
    const billing = { name: form.dataset.name };
    if (form.dataset.email) billing.email = form.dataset.email;
    const collected = await stripe.collectBankAccountForSetup({
      clientSecret: secret,
      params: {
        payment_method_type: "us_bank_account",
        payment_method_data: { billing_details: billing },
      },
    });
    if (collected.error) {
      show(collected.error.message || failed);
      return;
    }
    if (!collected.setupIntent || collected.setupIntent.status !== "requires_confirmation") {
      // The customer closed Stripe's bank window: no error, nothing chosen; they may pick again.
      button.disabled = false;
      return;
    }
    const confirmed = await stripe.confirmUsBankAccountSetup(secret);
    if (confirmed.error) {
      show(confirmed.error.message || failed);
      return;
    }
    const intent = confirmed.setupIntent || {};
    if (intent.next_action && intent.next_action.type === "verify_with_microdeposits") {
      // Entered by hand: usable only once small test deposits are verified, days from now.
      show(form.dataset.msgVerify || "That account needs a few days to be verified. Please use a card, or sign in to your bank to add it now.");
      return;
    }
    if (intent.status !== "succeeded" || !intent.payment_method) {
      show(failed);
      return;
    }
    form.elements.payment_method.value = intent.payment_method;
    form.submit();
  });
})();
