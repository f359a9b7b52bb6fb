"use strict";
// The signature pad: pointer events cover mouse, pen and touch; the drawing is posted as a PNG.
(function () {
  const form = document.getElementById("drawn-form");
  const canvas = document.getElementById("signature-pad");
  if (!form || !canvas || !canvas.getContext) return;
  form.hidden = false; // without script, the typed signature is the way to sign
  const pen = canvas.getContext("2d");
  const errors = document.getElementById("pad-errors");
  let strokes = 0;
  let last = null;

  pen.lineWidth = 3;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = "#17202a";

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    pen.beginPath();
    pen.arc(last.x, last.y, pen.lineWidth / 2, 0, 2 * Math.PI);
    pen.fillStyle = pen.strokeStyle;
    pen.fill();
    strokes += 1;
    errors.hidden = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    event.preventDefault();
    const next = point(event);
    pen.beginPath();
    pen.moveTo(last.x, last.y);
    pen.lineTo(next.x, next.y);
    pen.stroke();
    last = next;
  });
  const lift = () => { last = null; };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
  canvas.addEventListener("pointerleave", lift);

  document.getElementById("pad-clear").addEventListener("click", () => {
    pen.clearRect(0, 0, canvas.width, canvas.height);
    strokes = 0;
    form.elements.signature_data.value = "";
  });

  form.addEventListener("submit", (event) => {
    if (strokes === 0) {
      event.preventDefault();
      errors.textContent = form.dataset.msgMissing || "Please draw your signature in the box before you sign.";
      errors.hidden = false;
      return;
    }
    const drawing = canvas.toDataURL("image/png");
    if (drawing.length > 60000) { // the server takes up to 45 KB of PNG
      event.preventDefault();
      errors.textContent = form.dataset.msgTooLarge || "Your signature image is too large. Please clear it, draw again.";
      errors.hidden = false;
      return;
    }
    form.elements.signature_data.value = drawing;
  });
})();

// The typed name, shown as it will appear as a signature.
(function () {
  const input = document.getElementById("signer_name");
  const preview = document.getElementById("typed-preview");
  if (!input || !preview) return;
  input.addEventListener("input", () => { preview.textContent = input.value; });
})();
