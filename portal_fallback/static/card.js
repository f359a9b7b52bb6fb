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
      errors.textContent = result.error.message || "That card could not be saved.";
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
  form.addEventListener("submit", async (event) => {
    if (form.elements.payment_method.value) return;
    event.preventDefault();
    errors.hidden = true;
    const secret = form.dataset.clientSecret;
    const collected = await stripe.collectBankAccountForSetup({
      clientSecret: secret,
      params: {
        payment_method_type: "us_bank_account",
        payment_method_data: { billing_details: { name: form.dataset.name, email: form.dataset.email } },
      },
    });
    if (collected.error) {
      errors.textContent = collected.error.message || "That account could not be added.";
      errors.hidden = false;
      return;
    }
    const confirmed = await stripe.confirmUsBankAccountSetup(secret);
    if (confirmed.error || !confirmed.setupIntent || !confirmed.setupIntent.payment_method) {
      errors.textContent = (confirmed.error && confirmed.error.message) || "That account could not be added.";
      errors.hidden = false;
      return;
    }
    form.elements.payment_method.value = confirmed.setupIntent.payment_method;
    form.submit();
  });
})();
